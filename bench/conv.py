"""The unfold/fold convolution vs PyTorch's native conv: time and peak memory, layer by layer and per step.

For every conv layer of SimpleNet at MiniPlaces size (batch 64, 3x128x128) and Fashion-MNIST size (batch 256,
1x28x28), each layer's input shape found by running the model: forward + backward time and peak memory, custom
(``visionlab.ops.CustomConv2d``) next to native (``nn.Conv2d``) with the same weights. Then one whole SimpleNet
training step (forward, cross-entropy, backward, SGD step with momentum). As in training, the first layer's
input does not require a gradient. Times are medians of repetitions interleaved custom/native, so drift and
other load hit both alike.

Peak memory is the most memory held at once during the measured call, above what was held just before it
(inputs, weights, the optimizer's momentum — everything that exists before the call — is excluded; activations,
gradients, unfolded chunks and every temporary are in):

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the bytes allocated
  before the call.
* CPU: PyTorch has no allocator statistics there, so the measurement runs in a child process started with
  ``MALLOC_MMAP_THRESHOLD_=65536``: glibc then maps every block of 64 KiB or more on its own and unmaps it when
  freed, so the resident set follows the live bytes instead of keeping freed blocks cached. The peak is the
  kernel's high-water mark of the resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
  resident set just before the call. It counts everything the call touches — tensors, oneDNN scratchpads,
  MKL's buffers — for both convolutions alike, to within a few pages. (Timing runs in the parent with the
  default allocator; the child's forced unmapping makes allocation slower but does not change what is live.)

    python bench/conv.py            # full run (about a minute on 2 cores)
    python bench/conv.py --quick    # fewer repetitions, < 60 s
    python bench/conv.py --device cuda

Prints a table, then one JSON line: {"time_ratio": geometric mean over the 14 layers of custom/native
forward+backward time, "step_time_ratio": geometric mean over the two sizes of custom/native training-step time,
"memory_ratio": geometric mean over the two sizes of custom/native whole-step peak memory}. Goals on the
2-core CPU: time_ratio <= 1.25, memory_ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import SimpleNet
from visionlab.ops import CustomConv2d

SIZES = {"miniplaces": (64, 3, 128), "fashion-mnist": (256, 1, 28)}  # batch, channels, side
KINDS = ("native", "custom")


# ------------------------------------------------------------------------------------------------ workloads
def layer_specs(channels: int, side: int) -> list[tuple[nn.Conv2d, torch.Size]]:
    """SimpleNet's conv layers, each with the (batch-1) shape of the input it sees."""
    net = SimpleNet(num_classes=100, in_channels=channels)
    seen: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape)))
             for m in net.modules() if isinstance(m, nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        net(torch.zeros(1, channels, side, side))
    for h in hooks:
        h.remove()
    return seen


def layer_workload(layer: nn.Conv2d, shape: torch.Size, batch: int, first: bool, device: torch.device):
    """``{kind: fn}`` running forward + backward of the layer, native and custom with equal weights."""
    args = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    convs = {"native": nn.Conv2d(*args), "custom": CustomConv2d(*args)}
    convs["custom"].load_state_dict(convs["native"].state_dict())
    x = torch.randn(batch, *shape[1:], device=device, requires_grad=not first)
    with torch.no_grad():
        grad = torch.randn_like(convs["native"].to(device)(x))

    def make(conv: nn.Module) -> Callable[[], None]:
        conv.to(device)

        def run() -> None:
            conv(x).backward(grad)

        return run

    def reset() -> None:  # gradients from the previous call are dropped before measuring, not during
        x.grad = None
        for conv in convs.values():
            conv.zero_grad(set_to_none=True)

    return {k: make(c) for k, c in convs.items()}, reset


def step_workload(batch: int, channels: int, side: int, device: torch.device):
    """``{kind: fn}`` running one SimpleNet training step, native and custom from the same initial weights."""
    torch.manual_seed(0)
    models = {"native": SimpleNet(100, channels).to(device), "custom": SimpleNet(100, channels, CustomConv2d)}
    models["custom"].load_state_dict(models["native"].state_dict())
    models["custom"].to(device)
    x = torch.rand(batch, channels, side, side, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}

    def make(kind: str) -> Callable[[], None]:
        def run() -> None:
            F.cross_entropy(models[kind](x), y).backward()
            opts[kind].step()

        return run

    def reset() -> None:
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)

    return {k: make(k) for k in KINDS}, reset


# ------------------------------------------------------------------------------------------------ measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_pair(fns: dict[str, Callable[[], None]], reset: Callable[[], None], reps: int, device: torch.device):
    """Median seconds per call of each function, repetitions interleaved (one warm-up call each first)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(reps + 1):
        for name, fn in fns.items():
            reset()
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if rep:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_bytes(fn: Callable[[], None], reset: Callable[[], None], device: torch.device) -> float:
    """Peak bytes held during ``fn()`` above those held before it (see the module docstring)."""
    fn()  # warm-up: one-time caches (oneDNN primitives, momentum buffers) exist before the measurement
    reset()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    base = _status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    fn()
    return float(_status("VmHWM:") - base)


def measure_memory(device: torch.device) -> dict[str, dict[str, float]]:
    """``{"<size>/<layer index or 'step'>": {kind: peak bytes}}`` for every workload."""
    out: dict[str, dict[str, float]] = {}
    for size, (batch, channels, side) in SIZES.items():
        for index, (layer, shape) in enumerate(layer_specs(channels, side)):
            fns, reset = layer_workload(layer, shape, batch, index == 0, device)
            out[f"{size}/{index}"] = {k: peak_bytes(fn, reset, device) for k, fn in fns.items()}
        fns, reset = step_workload(batch, channels, side, device)
        out[f"{size}/step"] = {k: peak_bytes(fn, reset, device) for k, fn in fns.items()}
    return out


def memory_in_child(device: torch.device) -> dict[str, dict[str, float]]:
    """Run :func:`measure_memory` in a fresh process whose allocator returns freed blocks to the OS."""
    if not Path("/proc/self/clear_refs").exists():
        return {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(torch.get_num_threads()))
    cmd = [sys.executable, __file__, "--memory-child", "--device", str(device)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ report
def geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s on 2 cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per measurement (15; 5 with --quick)")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.memory_child:
        print(json.dumps(measure_memory(device)))
        return
    reps = args.reps or (5 if args.quick else 15)
    torch.manual_seed(0)
    memory = measure_memory(device) if device.type == "cuda" else memory_in_child(device)
    layer_ratios, step_ratios, memory_ratios = [], [], []
    print(f"{'size':<14}{'layer':<28}{'native ms':>10}{'custom ms':>10}{'t ratio':>9}"
          f"{'native MB':>11}{'custom MB':>11}{'m ratio':>9}")  # fmt: skip
    for size, (batch, channels, side) in SIZES.items():
        rows = []
        for index, (layer, shape) in enumerate(layer_specs(channels, side)):
            fns, reset = layer_workload(layer, shape, batch, index == 0, device)
            k, st = layer.kernel_size[0], layer.stride[0]
            desc = f"{index}: {layer.in_channels}->{layer.out_channels} k{k} s{st} @{shape[-1]}"
            rows.append((desc, time_pair(fns, reset, reps, device), memory.get(f"{size}/{index}", {})))
            layer_ratios.append(ratio(rows[-1][1]["custom"], rows[-1][1]["native"]))
        fns, reset = step_workload(batch, channels, side, device)
        rows.append(("whole training step", time_pair(fns, reset, reps, device), memory.get(f"{size}/step", {})))
        step_ratios.append(ratio(rows[-1][1]["custom"], rows[-1][1]["native"]))
        memory_ratios.append(ratio(rows[-1][2].get("custom", math.nan), rows[-1][2].get("native", math.nan)))
        for desc, t, m in rows:
            mb = {k: m.get(k, math.nan) / 2**20 for k in KINDS}
            print(f"{size:<14}{desc:<28}{1e3 * t['native']:>10.1f}{1e3 * t['custom']:>10.1f}"
                  f"{ratio(t['custom'], t['native']):>9.2f}{mb['native']:>11.1f}{mb['custom']:>11.1f}"
                  f"{ratio(mb['custom'], mb['native']):>9.2f}", flush=True)  # fmt: skip
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, median of {reps} "
        f"interleaved repetitions; memory = peak above the start of the call"
    )
    print(json.dumps({"time_ratio": round(geomean(layer_ratios), 4), "step_time_ratio": round(geomean(step_ratios), 4),
                      "memory_ratio": round(geomean(memory_ratios), 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
