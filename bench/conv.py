"""The unfold/fold convolution vs PyTorch's native conv: time and peak memory, layer by layer and per step.

For every conv layer of SimpleNet at MiniPlaces size (batch 64, 3x128x128) and Fashion-MNIST size (batch 256,
1x28x28): forward + backward time (median of interleaved repetitions) and peak memory; then one whole SimpleNet
training step (forward, cross-entropy, backward, SGD step). The first layer's input does not require a
gradient, as in training.

Peak memory. On CUDA: ``torch.cuda.max_memory_allocated`` above the memory held before the measured call. On the
CPU, PyTorch's allocator returns large blocks to the OS at once, so the process's resident set tracks live
tensors: the peak is the high-water mark of the resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) above the resident set just before the call. Everything that exists before the call
(inputs, weights, the saved graph for backward once built) is excluded; what forward + backward allocate is in.

    python bench/conv.py            # full run
    python bench/conv.py --quick    # fewer repetitions, < 60 s
    python bench/conv.py --device cuda

Prints a table, then one JSON line: {"time_ratio": geomean over layers of custom/native fwd+bwd time,
"step_time_ratio": geomean over the two sizes of custom/native training-step time, "memory_ratio": whole-step
peak custom/native at MiniPlaces size}. Goals on the 2-core CPU: time_ratio <= 1.25, memory_ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import SimpleNet
from visionlab.ops import CustomConv2d


class PeakMemory:
    """Peak bytes allocated by a call, above what was live before it (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_ok = Path("/proc/self/clear_refs").exists()

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def measure(self, fn: Callable[[], None]) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - base)
        if not self.cpu_ok:
            return float("nan")
        base = self._status("VmRSS:")
        Path("/proc/self/clear_refs").write_text("5")
        fn()
        return float(self._status("VmHWM:") - base)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def layer_inputs(batch: int, channels: int, size: int) -> list[tuple[nn.Conv2d, torch.Size]]:
    """SimpleNet's conv layers with the shape of the input each one sees."""
    net = SimpleNet(num_classes=100, in_channels=channels)
    shapes: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0].shape)))
             for m in net.modules() if isinstance(m, nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        net(torch.zeros(1, channels, size, size))
    for h in hooks:
        h.remove()
    return [(m, torch.Size((batch, *s[1:]))) for m, s in shapes]


def fwd_bwd(conv: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        conv.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        conv(x).backward(grad)

    return run


def time_pair(fns: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, repetitions interleaved so drift hits both alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> Callable[[], None]:
    def run() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return run


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    device = torch.device(args.device)
    reps = 2 if args.quick else args.reps
    mem = PeakMemory(device)
    torch.manual_seed(0)
    sizes = {"miniplaces": (64, 3, 128), "fashion-mnist": (256, 1, 28)}
    ratios, step_ratios = [], []
    memory_ratio = float("nan")
    print(f"{'size':<14}{'layer':<28}{'native ms':>10}{'custom ms':>10}{'t ratio':>9}"
          f"{'native MB':>11}{'custom MB':>11}{'m ratio':>9}")  # fmt: skip
    for size_name, (batch, channels, side) in sizes.items():
        for index, (layer, shape) in enumerate(layer_inputs(batch, channels, side)):
            native = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
            custom = CustomConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
            custom.load_state_dict(native.state_dict())
            native, custom = native.to(device), custom.to(device)
            x = torch.randn(shape, device=device, requires_grad=index > 0)
            grad = torch.randn_like(native(x))
            fns = {"native": fwd_bwd(native, x, grad), "custom": fwd_bwd(custom, x, grad)}
            t = time_pair(fns, reps, device)
            m = (
                {k: mem.measure(fn) for k, fn in fns.items()}
                if not args.quick
                else {"native": math.nan, "custom": math.nan}
            )
            ratios.append(t["custom"] / t["native"])
            k, st = layer.kernel_size[0], layer.stride[0]
            desc = f"{index}: {layer.in_channels}->{layer.out_channels} k{k} s{st} @{shape[-1]}"
            mb = {key: value / 2**20 for key, value in m.items()}
            print(f"{size_name:<14}{desc:<28}{1e3 * t['native']:>10.2f}{1e3 * t['custom']:>10.2f}{ratios[-1]:>9.2f}"
                  f"{mb['native']:>11.1f}{mb['custom']:>11.1f}{ratio(m['custom'], m['native']):>9.2f}")  # fmt: skip
        torch.manual_seed(0)
        models = {
            "native": SimpleNet(100, channels).to(device),
            "custom": SimpleNet(100, channels, CustomConv2d).to(device),
        }
        models["custom"].load_state_dict(models["native"].state_dict())
        x = torch.rand(batch, channels, side, side, device=device)
        y = torch.randint(0, 100, (batch,), device=device)
        fns = {
            k: train_step(m, x, y, torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)) for k, m in models.items()
        }
        t = time_pair(fns, reps, device)
        for m in models.values():  # the step's gradients and momentum exist before the measured step
            m.zero_grad(set_to_none=True)
        mstep = {k: mem.measure(fn) for k, fn in fns.items()}
        step_ratios.append(t["custom"] / t["native"])
        if size_name == "miniplaces":
            memory_ratio = ratio(mstep["custom"], mstep["native"])
        print(f"{size_name:<14}{'whole training step':<28}{1e3 * t['native']:>10.1f}{1e3 * t['custom']:>10.1f}"
              f"{step_ratios[-1]:>9.2f}{mstep['native'] / 2**20:>11.1f}{mstep['custom'] / 2**20:>11.1f}"
              f"{ratio(mstep['custom'], mstep['native']):>9.2f}")  # fmt: skip
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, {reps} repetitions")
    print(json.dumps({"time_ratio": round(geomean(ratios), 4), "step_time_ratio": round(geomean(step_ratios), 4),
                      "memory_ratio": round(memory_ratio, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
