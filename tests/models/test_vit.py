"""Vision Transformer pieces against hand-written references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionlab.models import build_model
from visionlab.models.vit import Attention, Block, DropPath, VisionTransformer, window_partition, window_unpartition


@pytest.mark.parametrize(("h", "w", "window"), [(8, 8, 4), (7, 7, 4), (5, 9, 3), (3, 3, 4)])
def test_window_partition_round_trip_with_padding(h: int, w: int, window: int) -> None:
    x = torch.randn(2, h, w, 6)
    windows, padded = window_partition(x, window)
    assert padded == (math.ceil(h / window) * window, math.ceil(w / window) * window)
    assert windows.shape == (2 * (padded[0] // window) * (padded[1] // window), window, window, 6)
    assert torch.equal(windows[0, : min(h, window), : min(w, window)], x[0, :window, :window])  # first window
    assert torch.equal(window_unpartition(windows, window, padded, (h, w)), x)
    if padded != (h, w):  # the padding is zeros
        assert windows[-1, -1, -1].abs().sum() == 0


def test_attention_equals_naive_softmax() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=12, num_heads=3).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), expected, atol=1e-12, rtol=0)


def test_window_covering_the_grid_equals_global_attention() -> None:
    torch.manual_seed(0)
    global_block = Block(16, 4, window_size=0).eval()
    window_block = Block(16, 4, window_size=8).eval()
    window_block.load_state_dict(global_block.state_dict())
    x = torch.randn(2, 8, 8, 16)  # one 8x8 window holds the whole grid
    torch.testing.assert_close(window_block(x), global_block(x), atol=1e-6, rtol=1e-6)


def test_drop_path_is_identity_in_eval_and_drops_samples_in_training() -> None:
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    kept = y[:, 0] != 0
    assert 350 < int(kept.sum()) < 650  # about half the samples dropped
    assert torch.allclose(y[kept], torch.full_like(y[kept], 2.0))  # the kept ones are rescaled by 1/(1-p)
    model = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                              num_heads=2, drop_path_rate=0.5).eval()  # fmt: skip
    img = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(img), model(img))
    model.train()
    assert model.blocks[1].drop_path.p == 0.5 and model.blocks[0].drop_path.p == 0.0


def test_original_default_configuration() -> None:
    model = build_model("vit", num_classes=100, in_channels=3, image_size=128)
    vit = model.net
    assert (vit.patch_size, vit.grid, vit.pos_embed.shape) == (16, 8, (1, 8, 8, 192))
    assert [b.window_size for b in vit.blocks] == [4, 0, 4, 0]
    assert [round(b.drop_path.p, 4) for b in vit.blocks] == [0.0, 0.0333, 0.0667, 0.1]
    assert all(b.attn.num_heads == 4 and b.mlp.fc1.out_features == 768 for b in vit.blocks)
    assert vit.blocks[0].attn.qkv.bias is not None
    assert 0.015 < float(vit.pos_embed.detach().std()) < 0.025
    out = model(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 100) and torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient_and_no_nan() -> None:
    torch.manual_seed(0)
    model = build_model("vit", num_classes=10, in_channels=1, image_size=28)
    out = model(torch.randn(4, 1, 28, 28) * 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_wrong_sizes_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        VisionTransformer(img_size=30, patch_size=4)
    model = build_model("vit", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="built for 28x28 images, got 32x32"):
        model(torch.rand(1, 1, 32, 32))
    other = build_model("vit", num_classes=10, in_channels=1, image_size=32, patch_size=4, embed_dim=128,
                        mlp_ratio=2.0)  # fmt: skip
    with pytest.raises(ValueError, match="8x8 token grid, this model has 7x7"):
        model.load_state_dict(other.state_dict())
