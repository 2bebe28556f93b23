"""Vision Transformer: the original course ``SimpleViT`` for MiniPlaces, built from small modules.

Patch embedding (a strided conv) -> learned absolute position embedding -> pre-norm blocks, some attending
within non-overlapping windows of the token grid (ViTDet-style, grids the window does not divide are padded),
the others globally -> mean over tokens -> LayerNorm -> linear head. Attention runs on
``F.scaled_dot_product_attention``. Tokens stay laid out as a grid ``(B, Gh, Gw, C)`` between blocks, so window
partitioning is a reshape, not a gather.

Defaults are the original: image 128, patch 16 (8x8 tokens), width 192, depth 4, 4 heads, MLP ratio 4, qkv bias,
drop path rising linearly to 0.1, window 4 on blocks 0 and 2, global attention on blocks 1 and 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from visionlab.errors import ConfigError
from visionlab.models.layers import ClassifierHead, DropPath, make_act
from visionlab.models.registry import register_model

__all__ = [
    "VIT_CONFIGS",
    "Attention",
    "Block",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "VisionTransformer",
    "vit_defaults",
    "window_partition",
    "window_unpartition",
]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nW, window, window, C)`` non-overlapping windows, zero-padding H and W up to
    multiples of ``window``; also returns the padded ``(Hp, Wp)`` for :func:`window_unpartition`."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: windows -> ``(B, H, W, C)``, cropping the padding away (a strided
    view when there was padding; the residual add that follows makes it contiguous without an extra copy)."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :]


class PatchEmbed(nn.Module):
    """Patches embedded by convolution: ``(B, C, H, W)`` -> token grid ``(B, H/p, W/p, dim)``.

    ``stem_channels=0`` (default): the classic ViT patch embedding, one ``p x p`` conv of stride ``p``
    (non-overlapping patches, a linear map of each). ``stem_channels=c > 0``: a convolutional stem ("early
    convolutions", Xiao et al., 2021) for a patch size ``p = 2^n``: ``n`` 3x3 convs of stride 2 with batch norm
    and ReLU, widths ``c, 2c, 4c, ...``, then a 1x1 conv to ``dim``. Same token grid, but each token sees
    overlapping, non-linearly mixed pixels -- a locality prior that ViTs otherwise have to learn from data.
    The stem's normalization is ``norm_layer(channels)`` (default ``nn.BatchNorm2d``) and its activation
    ``act_layer`` (default ``nn.ReLU``, in place when it can be).
    """

    def __init__(
        self,
        patch_size: int,
        in_channels: int,
        embed_dim: int,
        stem_channels: int = 0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        if stem_channels <= 0:
            self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
            return
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ConfigError(
                f"a convolutional stem needs a patch size that is a power of 2 >= 2, got {patch_size}",
                field="model_kwargs",
            )
        layers: list[nn.Module] = []
        for i in range(patch_size.bit_length() - 1):
            width = stem_channels << i
            conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False)
            layers += [conv, norm_layer(width), make_act(act_layer)]
            in_channels = width
        layers.append(nn.Conv2d(in_channels, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One copy here: a permuted (NCHW-strided) grid would otherwise propagate through every residual add,
        # and each LayerNorm (forward and backward) would copy it again (~4% of a training step; timm pays it).
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class Attention(nn.Module):
    """Multi-head self-attention over ``(B, N, dim)`` tokens with one fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embed dim {dim} is not divisible by num_heads {num_heads}", field="model_kwargs")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, (B, heads, N, d)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Linear -> activation (``act_layer``, default ``nn.GELU``) -> Linear."""

    def __init__(self, dim: int, hidden: int, act_layer: ActLayer = nn.GELU) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), make_act(act_layer), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block on a token grid ``(B, H, W, C)``; ``window_size > 0`` restricts attention
    to non-overlapping windows of that many tokens per side.

    As in ViTDet, a grid the window does not divide is zero-padded after ``norm1``; the padded positions take
    part in attention as keys (their keys are the qkv bias) and are cropped from the output. A window that
    covers the whole grid is global attention (no padding). ``norm_layer(dim)`` builds ``norm1``/``norm2``
    (default ``nn.LayerNorm``, over the last dimension) and ``act_layer`` the MLP's activation (default
    ``nn.GELU``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, window_size: int = 0, norm_layer: NormLayer = nn.LayerNorm,
                 act_layer: ActLayer = nn.GELU) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        if self.window_size > 0 and (h > self.window_size or w > self.window_size):
            ws = self.window_size
            y, padded = window_partition(y, ws)
            y = self.attn(y.view(-1, ws * ws, c)).view(-1, ws, ws, c)
            y = window_unpartition(y, ws, padded, (h, w))
        else:
            y = self.attn(y.reshape(b, h * w, c)).view(b, h, w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(ClassifierHead, nn.Module):
    """ViT with window + global attention and a learned absolute position embedding.

    Args:
        image_size: input side in pixels; must be a multiple of ``patch_size``.
        patch_size: side of the square patches (16 -> 8x8 tokens at 128 px).
        stem_channels: 0 = one strided conv per patch (classic); ``c > 0`` = a convolutional stem of width
            ``c`` on the same token grid (see :class:`PatchEmbed`).
        in_channels: input channels.
        num_classes: classifier outputs.
        embed_dim: transformer width (token dimension).
        depth: transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        qkv_bias: bias on the query/key/value projection.
        drop_path_rate: stochastic depth of the last block; block i gets ``rate * i / (depth - 1)``.
        window_size: tokens per window side for the blocks in ``window_block_indexes`` (0: all global).
        window_block_indexes: blocks that attend within windows; the others attend globally.
        use_abs_pos: add the learned position embedding (truncated normal, std 0.02).
        norm_layer: ``norm_layer(embed_dim)`` for the blocks' and the head's normalization (default
            ``nn.LayerNorm``); the convolutional stem keeps its batch norm (:class:`PatchEmbed`).
        act_layer: the MLPs' activation (default ``nn.GELU``).

    Shapes: ``(B, in_channels, image_size, image_size)`` -> logits ``(B, num_classes)``. The token grid is
    ``G = image_size / patch_size`` per side; ``pos_embed`` is ``(1, G, G, embed_dim)``.

    Example::

        >>> model = VisionTransformer(image_size=28, patch_size=4, in_channels=1, num_classes=10, embed_dim=64)
        >>> model(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    classifier_name = "head"

    def __init__(
        self,
        image_size: int = 128,
        patch_size: int = 16,
        in_channels: int = 3,
        num_classes: int = 100,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
        window_size: int = 4,
        window_block_indexes: Sequence[int] = (0, 2),
        use_abs_pos: bool = True,
        stem_channels: int = 0,
        norm_layer: NormLayer = nn.LayerNorm,
        act_layer: ActLayer = nn.GELU,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(
                f"image size {image_size} is not a multiple of the patch size {patch_size}", field="image_size"
            )
        if any(not 0 <= i < depth for i in window_block_indexes):
            raise ConfigError(
                f"window_block_indexes {tuple(window_block_indexes)} must lie in [0, depth={depth})",
                field="model_kwargs",
            )
        self.image_size, self.patch_size, self.grid = image_size, patch_size, image_size // patch_size
        self.num_classes, self.num_features = num_classes, embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim, stem_channels)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid, self.grid, embed_dim)) if use_abs_pos else None
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], window_size if i in window_block_indexes else 0,
                  norm_layer, act_layer)
            for i in range(depth)
        )  # fmt: skip
        self.norm = norm_layer(embed_dim)  # after pooling (timm's ``fc_norm`` with ``global_pool="avg"``)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def check_pos_embed(self, pos_embed: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming both token grids if ``pos_embed`` (from a checkpoint) does not fit."""
        if self.pos_embed is None or pos_embed.shape == self.pos_embed.shape:
            return
        theirs = "x".join(map(str, pos_embed.shape[1:3])) if pos_embed.dim() == 4 else f"{tuple(pos_embed.shape)}"
        raise ValueError(
            f"checkpoint position embedding is for a {theirs} token grid (shape {tuple(pos_embed.shape)}), this "
            f"model has {self.grid}x{self.grid} (image {self.image_size}, patch {self.patch_size}, shape "
            f"{tuple(self.pos_embed.shape)}); build the model at the checkpoint's image size and patch size"
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        if prefix + "pos_embed" in state_dict:
            self.check_pos_embed(state_dict[prefix + "pos_embed"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, in_channels, image_size, image_size)`` -> token grid ``(B, G, G, embed_dim)``, before
        pooling."""
        size = self.image_size
        if x.dim() != 4 or x.shape[-2:] != (size, size):
            got = "x".join(map(str, x.shape[-2:])) if x.dim() == 4 else "a non-(B, C, H, W) tensor"
            raise ValueError(
                f"VisionTransformer was built for {size}x{size} images, got {got} (input shape "
                f"{tuple(x.shape)}); build it with image_size={x.shape[-1]} or resize the images"
            )
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Token grid ``(B, G, G, embed_dim)`` -> mean over tokens -> ``norm`` -> pre-logits ``(B, embed_dim)``
        (:meth:`forward_head` then applies the linear ``head``)."""
        return self.norm(x.mean(dim=(1, 2)))

    def init_classifier(self, head: nn.Module) -> None:
        """A new head is initialised as at construction (truncated normal weights, zero biases)."""
        head.apply(_init_weights)


def _init_weights(m: nn.Module) -> None:
    """Truncated normal (std 0.02) Linear weights with zero biases; LayerNorm ones / zeros. The patch conv
    keeps PyTorch's default (fan-in) init."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# Per input size: the original MiniPlaces configuration at 128 px; small-image configurations sized so a
# Fashion-MNIST run fits a CPU budget (patch 4 -> 7x7 tokens; window 4 pads the grid to 8x8, 2x2 windows).
VIT_CONFIGS: dict[int, dict] = {
    128: dict(patch_size=16, embed_dim=192, depth=4, num_heads=4, window_size=4, window_block_indexes=(0, 2)),
    32: dict(patch_size=4, embed_dim=192, depth=4, num_heads=4, window_size=4, window_block_indexes=(0, 2)),
    28: dict(patch_size=4, stem_channels=32, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0, window_size=4,
             window_block_indexes=(0, 2, 4), drop_path_rate=0.05),
}  # fmt: skip


def vit_defaults(image_size: int) -> dict:
    """The registered architecture options at ``image_size`` (a copy; the 128 px configuration for other sizes)."""
    return dict(VIT_CONFIGS.get(image_size, VIT_CONFIGS[128]))


@register_model("vit", defaults=vit_defaults)
def _vit(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
    """Vision Transformer (patch embedding, window + global attention, absolute position embedding)."""
    config = {**vit_defaults(image_size), **kwargs}
    return VisionTransformer(image_size=image_size, in_channels=in_channels, num_classes=num_classes, **config)
