"""visionlab's ViT vs timm's VisionTransformer: forward + backward images/s at equal architecture.

Both with the same width, depth, heads, MLP ratio, patch and token grid, global attention in every block (ours
built with no window blocks), mean-pooled tokens with a LayerNorm after pooling, no class token, no dropout or
drop path. Timed iterations alternate between the two models after a warm-up; medians are compared.

    python bench/vit.py              # both configurations
    python bench/vit.py --quick      # fewer iterations, < 60 s
    python bench/vit.py --device cuda

Prints a table, then one JSON line {"ratio": geomean over the configurations of ours/timm images/s, ...};
the goal is ratio >= 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer as TimmViT

from visionlab.models.vit import VisionTransformer

CONFIGS = {
    # name: (batch, image, channels, patch, width, depth, heads, mlp ratio, classes)
    "miniplaces-default": (64, 128, 3, 16, 192, 4, 4, 4.0, 100),
    "fashion-mnist": (128, 28, 1, 4, 128, 4, 4, 2.0, 10),
}


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    device = torch.device(args.device)
    iters = 3 if args.quick else args.iters
    ratios = {}
    print(f"{'config':<22}{'ours img/s':>12}{'timm img/s':>12}{'ratio':>8}{'params ours':>13}{'params timm':>13}")
    for name, (batch, img, chans, patch, width, depth, heads, mlp, classes) in CONFIGS.items():
        torch.manual_seed(0)
        ours = VisionTransformer(img_size=img, patch_size=patch, in_chans=chans, num_classes=classes,
                                 embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=mlp, drop_path_rate=0.0,
                                 window_size=0, window_block_indexes=()).to(device)  # fmt: skip
        timm = TimmViT(img_size=img, patch_size=patch, in_chans=chans, num_classes=classes, embed_dim=width,
                       depth=depth, num_heads=heads, mlp_ratio=mlp, qkv_bias=True, class_token=False,
                       global_pool="avg", drop_path_rate=0.0).to(device)  # fmt: skip
        n_ours = sum(p.numel() for p in ours.parameters())
        n_timm = sum(p.numel() for p in timm.parameters())
        x = torch.rand(batch, chans, img, img, device=device)
        y = torch.randint(0, classes, (batch,), device=device)
        times = {"ours": [], "timm": []}
        for model in (ours, timm):
            step(model, x, y)  # warm-up
        for _ in range(iters):
            for key, model in (("ours", ours), ("timm", timm)):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step(model, x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[key].append(time.perf_counter() - start)
        rate = {k: batch / statistics.median(v) for k, v in times.items()}
        ratios[name] = rate["ours"] / rate["timm"]
        print(f"{name:<22}{rate['ours']:>12.1f}{rate['timm']:>12.1f}{ratios[name]:>8.3f}{n_ours:>13,}{n_timm:>13,}")
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, {iters} iterations")
    geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    print(json.dumps({"ratio": round(geo, 4), **{f"ratio_{k}": round(v, 4) for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
