"""Vision Transformer pieces against hand-written references, plus the registered configurations end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionlab.errors import ConfigError
from visionlab.models import build_model
from visionlab.models.vit import (
    Attention,
    Block,
    DropPath,
    PatchEmbed,
    VisionTransformer,
    window_partition,
    window_unpartition,
)

from ..statistical import Statistic


def tiny_vit(**kwargs) -> VisionTransformer:
    """A 28 px, 7x7-token ViT small enough for float64 and many calls."""
    config = dict(image_size=28, patch_size=4, in_channels=1, num_classes=10, embed_dim=32, depth=2, num_heads=2,
                  window_size=4, window_block_indexes=(0,))  # fmt: skip
    return VisionTransformer(**{**config, **kwargs})


@pytest.mark.parametrize(("h", "w", "window"), [(8, 8, 4), (7, 7, 4), (5, 9, 3), (3, 3, 4)])
def test_window_partition_round_trip_with_padding(h: int, w: int, window: int) -> None:
    x = torch.randn(2, h, w, 6)
    windows, padded = window_partition(x, window)
    assert padded == (math.ceil(h / window) * window, math.ceil(w / window) * window)
    assert windows.shape == (2 * (padded[0] // window) * (padded[1] // window), window, window, 6)
    assert torch.equal(windows[0, : min(h, window), : min(w, window)], x[0, :window, :window])  # first window
    right = padded[1] // window - 1  # windows run row-major, so the top-right window of image 0 is windows[right]
    assert torch.equal(windows[right, : min(h, window), : w - right * window], x[0, :window, right * window :])
    assert torch.equal(window_unpartition(windows, window, padded, (h, w)), x)
    if padded != (h, w):  # the padding is zeros
        assert windows[-1, -1, -1].abs().sum() == 0


def test_attention_equals_naive_softmax_by_hand() -> None:
    torch.manual_seed(0)
    dim, heads, n = 12, 3, 5
    d = dim // heads
    attn = Attention(dim=dim, num_heads=heads).double()
    torch.nn.init.normal_(attn.qkv.bias)  # nonzero biases, so their layout is checked too
    x = torch.randn(2, n, dim, dtype=torch.float64)
    w, bias = attn.qkv.weight, attn.qkv.bias  # rows: [q (heads x d), k (heads x d), v (heads x d)]
    heads_out = []
    for h in range(heads):
        rows = [slice(part * dim + h * d, part * dim + (h + 1) * d) for part in range(3)]
        q, k, v = (x @ w[r].T + bias[r] for r in rows)
        scores = torch.einsum("bnd,bmd->bnm", q, k) / math.sqrt(d)
        heads_out.append(torch.softmax(scores, dim=-1) @ v)
    expected = torch.cat(heads_out, dim=-1) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("window", [8, 10])
def test_window_covering_the_grid_equals_global_attention(window: int) -> None:
    torch.manual_seed(0)
    global_block = Block(16, 4, window_size=0).eval()
    window_block = Block(16, 4, window_size=window).eval()
    window_block.load_state_dict(global_block.state_dict())
    x = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(window_block(x), global_block(x), atol=1e-6, rtol=1e-6)


def random_block(dim: int = 16, heads: int = 4, window: int = 4) -> Block:
    """A float64 Block in eval mode with every parameter random (LayerNorm affine and qkv/proj biases included),
    so a wrong choice of what fills the padding (zeros before or after ``norm1``, a mask) changes the output."""
    block = Block(dim, heads, window_size=window).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        block.norm1.weight.add_(1.0)
        block.norm2.weight.add_(1.0)
    return block


def block_by_hand(block: Block, x: torch.Tensor) -> torch.Tensor:
    """The ViTDet block written out window by window, without ``window_partition``: the grid is cut into
    ``ws x ws`` windows from the top-left corner; a window cut short by the bottom or right edge is completed with
    zero vectors after ``norm1`` (so their keys and values are the qkv biases), which every real token of that
    window attends to; only the real tokens' outputs are kept."""
    b, h, w, c = x.shape
    ws, heads = block.window_size, block.attn.num_heads
    d = c // heads
    weight, bias = block.attn.qkv.weight, block.attn.qkv.bias  # rows: [q, k, v], each (heads x d)
    y = F.layer_norm(x, (c,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    attended = torch.empty_like(x)
    for n in range(b):
        for top in range(0, h, ws):
            for left in range(0, w, ws):
                real = y[n, top : top + ws, left : left + ws]  # rows x cols real tokens
                rows, cols = real.shape[:2]
                pad = torch.zeros(ws * ws - rows * cols, c, dtype=x.dtype)
                tokens = torch.cat([real.reshape(-1, c), pad])  # ws * ws tokens, the padding last
                q, k, v = (tokens @ weight[i * c : (i + 1) * c].T + bias[i * c : (i + 1) * c] for i in range(3))
                out = []
                for hd in range(heads):
                    cols_h = slice(hd * d, (hd + 1) * d)
                    scores = q[: rows * cols, cols_h] @ k[:, cols_h].T / math.sqrt(d)  # real queries, all keys
                    out.append(torch.softmax(scores, dim=-1) @ v[:, cols_h])
                out = torch.cat(out, dim=-1) @ block.attn.proj.weight.T + block.attn.proj.bias
                attended[n, top : top + rows, left : left + cols] = out.view(rows, cols, c)
    x = x + attended
    z = F.layer_norm(x, (c,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
    return x + F.linear(F.gelu(F.linear(z, block.mlp.fc1.weight, block.mlp.fc1.bias)), block.mlp.fc2.weight,
                        block.mlp.fc2.bias)  # fmt: skip


@pytest.mark.parametrize(("h", "w", "window"), [(7, 7, 4), (8, 8, 4), (5, 9, 3), (6, 5, 4)])
def test_window_block_equals_the_block_by_hand(h: int, w: int, window: int) -> None:
    """Window attention, its padding and the crop against the by-hand block: a wrong partition, masked padding,
    padding filled before ``norm1`` or with anything but zeros, or a wrong crop all change the output."""
    torch.manual_seed(0)
    block = random_block(window=window)
    x = torch.randn(2, h, w, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x), block_by_hand(block, x), atol=1e-12, rtol=0)


# Tokens of every window of the 7x7 grid padded to 8x8: the unpadded one, those padded on the right, at the bottom,
# and both. (1, 6), (6, 3) and (5, 6) border the padding; (3, 3) and (4, 4) touch the other windows diagonally.
@pytest.mark.parametrize("token", [(3, 3), (1, 6), (6, 3), (5, 6), (4, 4)])
def test_window_attention_stays_inside_its_window(token: tuple[int, int]) -> None:
    """Perturbing one token changes every token of its window (through attention) and nothing else, in either
    image of the batch. The perturbation is a random vector: a constant shift of a token's channels (the old
    ``+= 1.0``) is removed exactly by ``norm1``, so attention never saw it and only rounding noise was left."""
    torch.manual_seed(0)
    block = random_block()
    x = torch.randn(2, 7, 7, 16, dtype=torch.float64)
    bumped = x.clone()
    i, j = token
    bumped[1, i, j] += torch.randn(16, dtype=torch.float64)
    change = (block(bumped) - block(x)).abs().amax(dim=-1)  # (2, 7, 7)
    inside = torch.zeros(2, 7, 7, dtype=torch.bool)
    inside[1, i // 4 * 4 : i // 4 * 4 + 4, j // 4 * 4 : j // 4 * 4 + 4] = True
    # Inside: changes of order 0.1, far above float64 rounding (~1e-16). Outside: exactly 0 in practice (those tokens'
    # arithmetic is untouched); the bound only spares us relying on GEMM rows being computed independently.
    assert change[inside].min() > 1e-6, change[1]
    assert change[~inside].max() < 1e-12, change[1]


@pytest.mark.statistical(seed=0)
def test_drop_path_is_identity_in_eval_and_drops_samples_in_training(stat_seed: int, stat: Statistic) -> None:
    torch.manual_seed(stat_seed)
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    kept = y[:, 0] != 0
    stat.check("samples kept of 1000", kept.sum(), ">", 350)  # about half dropped, whole samples at a time
    stat.check("samples kept of 1000", kept.sum(), "<", 650)
    assert torch.equal(y[kept], torch.full_like(y[kept], 2.0))  # the kept ones are rescaled by 1/(1-p)
    assert torch.equal(y[~kept], torch.zeros_like(y[~kept]))

    model = tiny_vit(drop_path_rate=0.5).eval()
    assert [b.drop_path.p for b in model.blocks] == [0.0, 0.5]  # linear in the block index
    img = torch.rand(8, 1, 28, 28)
    evaluated = model(img)
    no_drop = tiny_vit(drop_path_rate=0.0).eval()
    no_drop.load_state_dict(model.state_dict())
    torch.testing.assert_close(evaluated, no_drop(img), atol=1e-6, rtol=0)  # eval: as if there were no drop path
    # Training: each sample's last-block branches are dropped (x0) or rescaled (x2), never x1 as in eval, so every
    # sample moves by ~1e-2. (The old `not torch.equal(model(img), model(img))` would also pass on rounding noise.)
    moved = (model.train()(img) - evaluated).abs().amax(dim=1)
    stat.check("least move of a sample's logits", moved.min(), ">", 1e-4)


@pytest.mark.parametrize(("image_size", "channels"), [(28, 1), (32, 3), (128, 3)])
def test_every_parameter_gets_a_gradient_and_no_nan(image_size: int, channels: int) -> None:
    torch.manual_seed(0)
    model = build_model("vit", num_classes=10, in_channels=channels, image_size=image_size)
    out = model(torch.randn(4, channels, image_size, image_size) * 10)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    # The smallest real gradient here is ~1e-4; a parameter whose effect a normalization cancels would get only
    # float32 rounding noise (~1e-8), which `> 0` would have accepted.
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 1e-6, name


def test_original_default_configuration() -> None:
    model = build_model("vit", num_classes=100, in_channels=3, image_size=128)
    vit = model.net
    assert (vit.patch_size, vit.grid, vit.pos_embed.shape) == (16, 8, (1, 8, 8, 192))
    assert [b.window_size for b in vit.blocks] == [4, 0, 4, 0]
    assert [round(b.drop_path.p, 4) for b in vit.blocks] == [0.0, 0.0333, 0.0667, 0.1]
    assert all(b.attn.num_heads == 4 and b.mlp.fc1.out_features == 768 for b in vit.blocks)
    assert vit.blocks[0].attn.qkv.bias is not None
    assert 0.015 < float(vit.pos_embed.detach().std()) < 0.025
    assert 0.018 < float(vit.blocks[0].mlp.fc1.weight.detach().std()) < 0.022
    assert not vit.blocks[0].mlp.fc1.bias.any() and torch.equal(vit.norm.weight, torch.ones(192))
    out = model.eval()(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 100) and torch.isfinite(out).all()


def test_fashion_mnist_configuration() -> None:
    model = build_model("vit", num_classes=10, in_channels=1, image_size=28).eval()
    vit = model.net
    assert (vit.grid, [b.window_size for b in vit.blocks]) == (7, [4, 0, 4, 0, 4, 0])  # 7x7 tokens, padded windows
    assert isinstance(vit.patch_embed.proj, torch.nn.Sequential)  # the conv stem, widths 32, 64, then 1x1 to 128
    assert [m.out_channels for m in vit.patch_embed.proj if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128]
    out = model(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert vit.forward_features(torch.rand(2, 1, 28, 28)).shape == (2, 7, 7, vit.num_features)


@pytest.mark.parametrize("patch", [2, 4])
def test_patch_embedding_by_hand(patch: int) -> None:
    """Token (i, j) is the flattened ``patch x patch`` window at pixel (patch * i, patch * j) times the weights,
    plus the bias: the classic embedding is a linear map of non-overlapping patches."""
    torch.manual_seed(0)
    embed = PatchEmbed(patch, in_channels=2, embed_dim=5).double()
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    grid = 12 // patch
    expected = torch.empty(3, grid, grid, 5, dtype=torch.float64)
    for i in range(grid):
        for j in range(grid):
            window = x[:, :, patch * i : patch * (i + 1), patch * j : patch * (j + 1)]
            expected[:, i, j] = torch.einsum("bchw,ochw->bo", window, embed.proj.weight) + embed.proj.bias
    out = embed(x)
    assert out.shape == (3, grid, grid, 5) and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("patch", "image", "widths"), [(4, 28, [8, 16]), (16, 128, [8, 16, 32, 64]), (2, 12, [8])])
def test_conv_stem_layers_grid_and_overlap(patch: int, image: int, widths: list[int]) -> None:
    torch.manual_seed(0)
    stem = PatchEmbed(patch, in_channels=3, embed_dim=24, stem_channels=8).double().eval()
    convs = [m for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [*widths, 24]
    assert all((c.kernel_size, c.stride) == ((3, 3), (2, 2)) for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    x = torch.rand(2, 3, image, image, dtype=torch.float64)
    out = stem(x)
    assert out.shape == (2, image // patch, image // patch, 24)
    # Unlike the classic embedding, a pixel on a patch's edge reaches the neighbouring tokens too: pixel p - 1 lies
    # in the receptive field [p t - (p - 1), p t + (p - 1)] of tokens t = 0 and 1 only. Changed means far above
    # float64 rounding (the smallest real change is ~4e-4), unchanged means below it (exactly 0 in practice).
    bumped = x.clone()
    bumped[:, :, patch - 1, patch - 1] += 1.0
    change = (stem(bumped) - out).abs().amax(dim=(0, 3))
    reached = torch.zeros_like(change, dtype=torch.bool)
    reached[:2, :2] = True
    assert change[reached].min() > 1e-6 and change[~reached].max() < 1e-12, change
    classic = PatchEmbed(patch, in_channels=3, embed_dim=24).double()
    change = (classic(bumped) - classic(x)).abs().amax(dim=(0, 3))
    assert change[0, 0] > 1e-6 and change.flatten()[1:].max() < 1e-12, change


def test_conv_stem_in_the_model_and_bad_patch_sizes() -> None:
    model = tiny_vit(stem_channels=8)
    assert model.grid == 7 and model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="convolutional stem needs a patch size that is a power of 2 >= 2, got 6"):
        VisionTransformer(image_size=24, patch_size=6, stem_channels=8)


def test_matches_timm_with_the_same_weights() -> None:
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    ours = tiny_vit(window_size=0, window_block_indexes=(), drop_path_rate=0.0).double().eval()
    # timm's names for our image_size / in_channels: img_size / in_chans
    theirs = timm_vit.VisionTransformer(img_size=ours.image_size, patch_size=4, in_chans=1, num_classes=10,
                                        embed_dim=32, depth=2, num_heads=2, class_token=False, global_pool="avg",
                                        norm_layer=torch.nn.LayerNorm).double().eval()  # fmt: skip
    state = {("fc_norm." + k[5:] if k.startswith("norm.") else k): v for k, v in ours.state_dict().items()}
    state["pos_embed"] = state["pos_embed"].flatten(1, 2)  # (1, G, G, C) grid -> (1, G*G, C) sequence
    theirs.load_state_dict(state)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-10, rtol=0)


def test_classifier_reset_and_pre_logits() -> None:
    model = tiny_vit().eval()
    assert model.get_classifier() is model.head
    model.reset_classifier(3)
    img = torch.rand(2, 1, 28, 28)
    assert model(img).shape == (2, 3) and model.num_classes == 3
    features = model.forward_head(model.forward_features(img), pre_logits=True)
    assert features.shape == (2, 32)
    model.reset_classifier(0)
    torch.testing.assert_close(model(img), features)


def test_wrong_sizes_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        VisionTransformer(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match=r"window_block_indexes \(0, 2\) must lie in \[0, depth=2\)"):
        VisionTransformer(depth=2)
    model = build_model("vit", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="built for 28x28 images, got 32x32"):
        model(torch.rand(1, 1, 32, 32))
    other = build_model("vit", num_classes=10, in_channels=1, image_size=32, patch_size=4, embed_dim=128,
                        depth=6, mlp_ratio=2.0, window_block_indexes=())  # fmt: skip
    with pytest.raises(ValueError, match=r"8x8 token grid .* this model has 7x7"):
        model.load_state_dict(other.state_dict())


def test_the_constructor_defaults_are_the_original_configuration() -> None:
    vit = VisionTransformer()
    assert (vit.image_size, vit.patch_size, vit.grid, vit.num_classes, vit.num_features) == (128, 16, 8, 100, 192)
    assert isinstance(vit.patch_embed.proj, torch.nn.Conv2d) and vit.patch_embed.proj.in_channels == 3
    assert vit.pos_embed.shape == (1, 8, 8, 192) and vit.head.out_features == 100
    assert [b.window_size for b in vit.blocks] == [4, 0, 4, 0]
    assert [b.drop_path.p for b in vit.blocks] == [0.1 * i / 3 for i in range(4)]
    assert all(
        b.attn.num_heads == 4 and b.mlp.fc1.out_features == 768 and b.attn.qkv.bias is not None for b in vit.blocks
    )
    block = Block(8, 2)
    assert (block.window_size, block.drop_path.p, block.mlp.fc1.out_features, block.mlp.fc2.in_features) == (
        0,
        0.0,
        32,
        32,
    )
    assert block.attn.qkv.bias is not None and block.norm1.normalized_shape == block.norm2.normalized_shape == (8,)
    assert (block.attn.qkv.in_features, block.attn.qkv.out_features, block.attn.proj.in_features) == (8, 24, 8)


def test_options_reach_every_block() -> None:
    vit = tiny_vit(depth=3, num_heads=4, mlp_ratio=1.5, qkv_bias=False, drop_path_rate=0.2, window_size=2,
                   window_block_indexes=(1, 2), use_abs_pos=False).eval()  # fmt: skip
    assert [b.window_size for b in vit.blocks] == [0, 2, 2] and [b.drop_path.p for b in vit.blocks] == [0.0, 0.1, 0.2]
    assert all(b.attn.qkv.bias is None and b.attn.num_heads == 4 and b.mlp.fc1.out_features == 48 for b in vit.blocks)
    assert vit.pos_embed is None and "pos_embed" not in vit.state_dict()
    x = torch.rand(2, 1, 28, 28)
    tokens = vit.patch_embed(x)
    for block in vit.blocks:  # no position embedding added
        tokens = block(tokens)
    torch.testing.assert_close(vit.forward_features(x), tokens, rtol=0, atol=0)
    vit.check_pos_embed(torch.zeros(3))  # nothing to check without a position embedding
    assert [b.drop_path.p for b in tiny_vit(depth=1, window_block_indexes=(), drop_path_rate=0.3).blocks] == [0.0]
    assert Attention(6, 3, qkv_bias=False).qkv.bias is None and Attention(6, 3).qkv.bias is not None


def test_the_position_embedding_is_added_to_the_patch_tokens() -> None:
    torch.manual_seed(0)
    vit = tiny_vit(depth=1, window_block_indexes=())
    x = torch.rand(2, 1, 28, 28)
    tokens = vit.blocks[0](vit.patch_embed(x) + vit.pos_embed)
    torch.testing.assert_close(vit.forward_features(x), tokens, rtol=0, atol=0)
    pooled = F.layer_norm(tokens.mean(dim=(1, 2)), (32,), vit.norm.weight, vit.norm.bias, vit.norm.eps)
    torch.testing.assert_close(vit.forward_head(tokens, pre_logits=True), pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(vit(x), pooled @ vit.head.weight.T + vit.head.bias, rtol=0, atol=1e-6)


def test_init_weights_by_value() -> None:
    from visionlab.models.vit import _init_weights

    linear, no_bias, norm = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3, bias=False), torch.nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.fill_(3.0)
        norm.bias.fill_(2.0)
    torch.manual_seed(4)
    for m in (linear, no_bias, norm):
        _init_weights(m)
    torch.manual_seed(4)
    expected = [torch.nn.init.trunc_normal_(torch.empty(3, 5), std=0.02) for _ in range(2)]
    assert torch.equal(linear.weight, expected[0]) and torch.equal(linear.bias, torch.zeros(3))
    assert torch.equal(no_bias.weight, expected[1]) and no_bias.bias is None
    assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4))

    vit = tiny_vit()
    torch.manual_seed(6)
    vit.reset_classifier(1)  # one class is a linear head too, initialised like the others
    torch.manual_seed(6)
    _init_weights(head := torch.nn.Linear(32, 1))
    assert (
        isinstance(vit.head, torch.nn.Linear) and torch.equal(vit.head.weight, head.weight) and not vit.head.bias.any()
    )
    assert vit.num_classes == 1 and vit(torch.rand(2, 1, 28, 28)).shape == (2, 1)


def test_patch_embedding_options_and_errors_are_exact() -> None:
    stem = PatchEmbed(4, in_channels=3, embed_dim=8, stem_channels=1)  # the narrowest conv stem
    convs = [m for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 1), (1, 2), (2, 8)]
    assert all((c.padding, c.bias) == ((1, 1), None) for c in convs[:-1]) and convs[-1].bias is not None
    assert [m.num_features for m in stem.proj if isinstance(m, torch.nn.BatchNorm2d)] == [1, 2]
    assert all(m.inplace for m in stem.proj if isinstance(m, torch.nn.ReLU))
    assert [type(m).__name__ for m in stem.proj] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"]
    two = PatchEmbed(2, in_channels=3, embed_dim=8, stem_channels=4)
    assert [m.out_channels for m in two.proj if isinstance(m, torch.nn.Conv2d)] == [4, 8]
    classic = PatchEmbed(3, in_channels=2, embed_dim=5)
    assert (classic.proj.in_channels, classic.proj.out_channels, classic.proj.kernel_size, classic.proj.stride) == (
        2, 5, (3, 3), (3, 3)
    )  # fmt: skip
    for patch in (1, 3, 6, 12):
        with pytest.raises(
            ConfigError,
            match=rf"^model_kwargs: a convolutional stem needs a patch size that is a power of 2 >= 2, got {patch}$",
        ):
            PatchEmbed(patch, in_channels=3, embed_dim=8, stem_channels=4)
    with pytest.raises(ConfigError, match=r"^model_kwargs: embed dim 10 is not divisible by num_heads 4$"):
        Attention(10, 4)
    with pytest.raises(ConfigError, match=r"^image_size: image size 30 is not a multiple of the patch size 4$"):
        VisionTransformer(image_size=30, patch_size=4)
    with pytest.raises(ConfigError, match=r"^model_kwargs: window_block_indexes \(-1,\) must lie in \[0, depth=4\)$"):
        VisionTransformer(window_block_indexes=(-1,))
    assert [b.window_size for b in tiny_vit(window_block_indexes=(1,)).blocks] == [0, 4]


def test_size_errors_name_both_shapes_exactly() -> None:
    model = tiny_vit()
    message = (
        r"^VisionTransformer was built for 28x28 images, got a non-\(B, C, H, W\) tensor "
        r"\(input shape \(1, 28, 28\)\); build it with image_size=28 or resize the images$"
    )
    with pytest.raises(ValueError, match=message):
        model(torch.rand(1, 28, 28))
    message = (
        r"^VisionTransformer was built for 28x28 images, got 28x32 \(input shape "
        r"\(1, 1, 28, 32\)\); build it with image_size=32 or resize the images$"
    )
    with pytest.raises(ValueError, match=message):
        model(torch.rand(1, 1, 28, 32))
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    message = (
        r"^checkpoint position embedding is for a \(1, 49, 32\) token grid \(shape \(1, 49, "
        r"32\)\), this model has 7x7 \(image 28, patch 4, shape \(1, 7, 7, 32\)\); build the model at the "
        r"checkpoint's image size and patch size$"
    )
    with pytest.raises(ValueError, match=message):
        model.check_pos_embed(torch.zeros(1, 49, 32))
    with pytest.raises(
        ValueError, match=r"^checkpoint position embedding is for a 8x6 token grid \(shape \(1, 8, 6, 32\)\)"
    ):
        model.load_state_dict({**model.state_dict(), "pos_embed": torch.zeros(1, 8, 6, 32)})
    model.check_pos_embed(torch.zeros(1, 7, 7, 32))


@pytest.mark.parametrize(("h", "w", "window"), [(7, 3, 4), (3, 7, 4), (4, 4, 4)])
def test_window_block_on_grids_the_window_covers_in_one_direction(h: int, w: int, window: int) -> None:
    torch.manual_seed(0)
    block = random_block(window=window)
    x = torch.randn(2, h, w, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x), block_by_hand(block, x), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("h", "w"), [(4, 3), (3, 4), (4, 4), (2, 3)])
def test_a_window_covering_the_grid_is_global_attention_without_padding(h: int, w: int) -> None:
    """A grid no larger than the window in both directions is not padded: padded tokens would join as keys."""
    torch.manual_seed(0)
    block = random_block(window=4)
    global_block = random_block(window=0)
    global_block.load_state_dict(block.state_dict())
    x = torch.randn(2, h, w, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x), global_block(x), atol=0, rtol=0)


def test_a_window_of_one_token_attends_to_itself_only() -> None:
    torch.manual_seed(0)
    block = random_block(window=1)
    x = torch.randn(2, 3, 2, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x), block_by_hand(block, x), atol=1e-12, rtol=0)
