"""Where a run computes: device selection, the autocast context, and the checks that refuse up front a
combination that would fail or crawl only later (bf16 autocast on a CPU without native bf16, inductor without a
C++ compiler)."""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from visionlab.errors import ConfigError

__all__ = [
    "AMP_CPU_WARNING",
    "amp_dtype",
    "autocast",
    "check_compile",
    "cpu_has_native_bf16",
    "needs_loss_scaling",
    "select_device",
]


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{name!r} requested but CUDA is not available here (use cpu or auto)", field="device")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ConfigError(f"{name!r} requested but CUDA has devices cuda:0 to cuda:{count - 1}", field="device")
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype on ``device``: bfloat16, except float16 on a GPU without bfloat16 (before Ampere).

    bfloat16 keeps float32's exponent range, so small gradients do not flush to zero. That matters beyond the
    weights' gradients, which a loss scaler can rescue: an attack's input gradient has no scaler. Under float16
    autocast 42% of the input gradient's values of the mean cross-entropy came out exactly 0 (512 Fashion-MNIST
    test images, the demo SimpleNet, CPU autocast), a PGD step then moving those pixels not at all; 0% under
    bfloat16 and float32 (the nonzero values' signs agreed with float32's for 98% under float16, 97% under
    bfloat16: both round). On the CPU float16 has no kernels worth using."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def needs_loss_scaling(device: torch.device, enabled: bool) -> bool:
    """Whether mixed precision on ``device`` needs a gradient scaler: only float16 autocast
    (:func:`amp_dtype`) does."""
    return enabled and amp_dtype(device) == torch.float16


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """Mixed precision on ``device`` when ``enabled``, in :func:`amp_dtype`; a context that changes nothing
    otherwise."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device))


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU does bfloat16 arithmetic natively (``avx512_bf16`` or ``amx_bf16`` in its flags); None
    when that cannot be told (no ``/proc/cpuinfo``: not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


# Measured on a 2-core AMD EPYC with AVX2 only: a SimpleNet epoch on 10k Fashion-MNIST images took 103 s with
# --amp against 12 s without (BENCHMARKS.md): without native bf16 every bf16 op is emulated.
AMP_CPU_WARNING = (
    "amp on this CPU: it has no native bfloat16 arithmetic (no avx512_bf16 / amx_bf16 flag), so bf16 autocast is "
    "emulated and much slower (8.6x per epoch measured on such a CPU); leave amp off on this machine"
)


def check_compile(backend: str, device: torch.device) -> None:
    """Refuse up front what ``torch.compile`` would fail on only at the first step, deep in a traceback: the
    inductor backend generates C++ for the CPU and needs a compiler (``$CXX``, ``g++``, ``clang++`` or ``c++``)."""
    if backend == "inductor" and device.type == "cpu":
        candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in candidates if c):
            raise ConfigError(
                "the inductor backend compiles C++ for the CPU, and no C++ compiler was found (set CXX, or install "
                "g++: apt-get install g++); --compile aot_eager needs none (it captures the graph, without speed-up)",
                field="compile",
            )
