"""visionlab's ViT vs timm's VisionTransformer: forward + backward images/s at equal architecture.

Ours is built through the registry (``build_model("vit", image_size=...)``) with every block global, no drop
path and the classic patch embedding (one strided conv, as timm's); timm's gets the same width, depth, heads,
MLP ratio, patch and token grid, no class token, mean-pooled tokens with a LayerNorm after pooling
(``global_pool="avg"``), no dropout or drop path. Before timing, ours' weights are loaded into timm's and the
logits compared, so both run the same function. Timed iterations alternate between the two (the order flips
every iteration) after a warm-up; medians are compared.

    python bench/vit.py              # both configurations, 30 iterations
    python bench/vit.py --quick      # 6 iterations, ~10 s on 2 idle CPU cores
    python bench/vit.py --device cuda

Prints a table, then LAST one JSON line {"ratio": geometric mean over the configurations of
ours/timm images/s (ratio of medians), "ratio_<config>": ..., ...}; the goal is ratio >= 1.0. The "paired"
column (median over iterations of timm time / ours time, each pair timed back to back) is less sensitive to
other load on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer as TimmViT

from visionlab.models import build_model
from visionlab.models.vit import VisionTransformer

# name: (image size, channels, classes, batch); the architecture is the registered one for that image size.
CONFIGS = {
    "miniplaces-default": (128, 3, 100, 64),
    "fashion-mnist": (28, 1, 10, 128),
}


def build_pair(image: int, channels: int, classes: int) -> tuple[VisionTransformer, TimmViT]:
    ours = build_model("vit", num_classes=classes, in_channels=channels, image_size=image, window_size=0,
                       window_block_indexes=(), drop_path_rate=0.0, stem_channels=0).net  # fmt: skip
    timm = TimmViT(img_size=image, patch_size=ours.patch_size, in_chans=channels, num_classes=classes,
                   embed_dim=ours.num_features, depth=len(ours.blocks), num_heads=ours.blocks[0].attn.num_heads,
                   mlp_ratio=ours.blocks[0].mlp.fc1.out_features / ours.num_features, qkv_bias=True,
                   class_token=False, global_pool="avg", drop_rate=0.0, drop_path_rate=0.0,
                   norm_layer=partial(torch.nn.LayerNorm, eps=1e-5))  # fmt: skip
    state = {("fc_norm." + k[5:] if k.startswith("norm.") else k): v for k, v in ours.state_dict().items()}
    state["pos_embed"] = state["pos_embed"].flatten(1, 2)  # our (1, G, G, C) grid -> timm's (1, G*G, C)
    timm.load_state_dict(state)
    return ours, timm


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 warm-up + 6 timed iterations per model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=30, help="timed forward+backward iterations per model")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    iters, warmup = (6, 2) if args.quick else (args.iters, args.warmup)
    ratios, results, unstable = {}, {}, {}
    print(f"{'config':<20}{'batch':>6}{'tokens':>7}{'params':>11}{'ours img/s':>12}{'timm img/s':>12}"
          f"{'ratio':>8}{'paired':>8}{'ours p25-p75 ms':>18}{'timm p25-p75 ms':>18}{'max|dlogit|':>13}")  # fmt: skip
    for name, (image, channels, classes, batch) in CONFIGS.items():
        torch.manual_seed(0)
        ours, timm = build_pair(image, channels, classes)
        ours, timm = ours.to(device).train(), timm.to(device).train()
        x = torch.rand(batch, channels, image, image, device=device)
        y = torch.randint(0, classes, (batch,), device=device)
        with torch.no_grad():
            diff = float((ours(x) - timm(x)).abs().max())
        models = {"ours": ours, "timm": timm}
        for _ in range(warmup):
            for model in models.values():
                step(model, x, y)
        times: dict[str, list[float]] = {"ours": [], "timm": []}
        for i in range(iters):
            for key in ("ours", "timm") if i % 2 == 0 else ("timm", "ours"):
                sync(device)
                start = time.perf_counter()
                step(models[key], x, y)
                sync(device)
                times[key].append(time.perf_counter() - start)
        rate = {k: batch / statistics.median(v) for k, v in times.items()}
        spread = {k: [1e3 * q for q in statistics.quantiles(v, n=4)[::2]] for k, v in times.items()}
        ratios[name] = rate["ours"] / rate["timm"]
        # Each iteration times the two back to back, so a per-iteration ratio cancels slow drifts in the load of a
        # shared machine; its median is a check on the ratio of medians.
        paired = statistics.median(t / o for o, t in zip(times["ours"], times["timm"], strict=True))
        results[name] = {"ours_img_s": round(rate["ours"], 1), "timm_img_s": round(rate["timm"], 1),
                         "paired_ratio": round(paired, 4)}  # fmt: skip
        unstable[name] = any(q[1] > 1.5 * q[0] for q in spread.values())  # p75 > 1.5 x p25: other load
        n_params = sum(p.numel() for p in ours.parameters())
        assert n_params == sum(p.numel() for p in timm.parameters()), "architectures differ"
        print(f"{name:<20}{batch:>6}{ours.grid**2:>7}{n_params:>11,}{rate['ours']:>12.1f}{rate['timm']:>12.1f}"
              f"{ratios[name]:>8.3f}{paired:>8.3f}{'{:.1f}-{:.1f}'.format(*spread['ours']):>18}"
              f"{'{:.1f}-{:.1f}'.format(*spread['timm']):>18}{diff:>13.1e}")  # fmt: skip
    threads = torch.get_num_threads()
    print(f"device {device}, {threads} threads, torch {torch.__version__}, {warmup} warm-up + {iters} timed "
          "iterations per model, medians; ratio = ours/timm images/s (JSON: geomean over configs); "
          "paired = median per-iteration ratio")  # fmt: skip
    if any(unstable.values()):
        print(f"WARNING: unstable timings (p75 > 1.5 x p25) for {', '.join(k for k, v in unstable.items() if v)}: "
              "another process is loading the CPU; trust the paired ratio or rerun")  # fmt: skip
    geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    summary = {"ratio": round(geo, 4), **{f"ratio_{k}": round(v, 4) for k, v in ratios.items()}}
    print(json.dumps({**summary, "ratio_is": "geomean over configs", "device": str(device), "iters": iters,
                      "threads": threads, "unstable": any(unstable.values()), **results}))  # fmt: skip


if __name__ == "__main__":
    main()
