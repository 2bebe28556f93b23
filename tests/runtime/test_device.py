"""``runtime/device.py``: the device chosen or refused by name, autocast's dtype, native bfloat16 read from the
CPU flags, and the C++ compiler the inductor backend needs on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.engine import (
    select_device,
)
from visionlab.errors import ConfigError
from visionlab.runtime import amp_dtype, autocast, cpu_has_native_bf16, needs_loss_scaling
from visionlab.runtime import device as device_module

CPU = torch.device("cpu")


def test_auto_device_is_cuda_exactly_when_cuda_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == select_device("auto") == CPU
    assert select_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda") == torch.device("cuda")  # no index: device 0, which exists
    with pytest.raises(Exception, match=r"^device: 'cuda:1' requested but CUDA has devices cuda:0 to cuda:0$"):
        select_device("cuda:1")


def test_select_device_says_which_devices_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda:0' requested but CUDA is not available here") as info:
        select_device("cuda:0")
    assert info.value.field == "device"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="'cuda:2' requested but CUDA has devices cuda:0 to cuda:1"):
        select_device("cuda:2")
    assert select_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # the CUDA context is only built, not entered
@pytest.mark.parametrize(("bf16_gpu", "gpu_dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_autocast_is_bfloat16_unless_the_gpu_lacks_it_and_only_float16_scales_the_loss(
    monkeypatch: pytest.MonkeyPatch, bf16_gpu: bool, gpu_dtype: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_gpu)
    a, b = torch.ones(2, 2), torch.ones(2, 2)
    with autocast(CPU, True):
        assert torch.mm(a, b).dtype == torch.bfloat16
    with autocast(CPU, False):
        assert torch.mm(a, b).dtype == torch.float32
    cuda = torch.device("cuda")
    context = autocast(cuda, True)
    assert (context.device, context.fast_dtype) == ("cuda", gpu_dtype) and amp_dtype(cuda) == gpu_dtype
    assert needs_loss_scaling(cuda, True) is (not bf16_gpu)
    assert not needs_loss_scaling(cuda, False) and not needs_loss_scaling(CPU, True)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu sse avx2 avx512f avx512_bf16", True), ("fpu avx2 amx_bf16 amx_tile", True), ("fpu sse avx2 fma", False),
     ("fpu avx512f avx512bw avx512_vnni", False)],
)  # fmt: skip
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(info) is expected


def test_no_cpuinfo_means_unknown(tmp_path: Path) -> None:
    assert cpu_has_native_bf16(tmp_path / "missing") is None


def test_the_cpu_flags_are_read_from_proc_cpuinfo_by_default() -> None:
    assert device_module.cpu_has_native_bf16() is device_module.cpu_has_native_bf16("/proc/cpuinfo")


@pytest.mark.parametrize("found", ["/opt/bin/cxx", "g++", "clang++", "c++"])
def test_inductor_on_the_cpu_takes_the_first_compiler_found(monkeypatch: pytest.MonkeyPatch, found: str) -> None:
    order = ["/opt/bin/cxx", "g++", "clang++", "c++"]
    monkeypatch.setenv("CXX", "/opt/bin/cxx")
    asked: list[str] = []
    monkeypatch.setattr(
        device_module.shutil, "which", lambda name: asked.append(name) or (name if name == found else None)
    )
    device_module.check_compile("inductor", torch.device("cpu"))
    assert asked == order[: order.index(found) + 1]


def test_inductor_without_any_compiler_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(device_module.shutil, "which", lambda name: asked.append(name))
    with pytest.raises(ConfigError) as info:
        device_module.check_compile("inductor", torch.device("cpu"))
    assert str(info.value) == (
        "compile: the inductor backend compiles C++ for the CPU, and no C++ compiler was found (set CXX, or install "
        "g++: apt-get install g++); --compile aot_eager needs none (it captures the graph, without speed-up)"
    )
    assert asked == ["g++", "clang++", "c++"]  # an unset CXX is not looked up
    asked.clear()
    device_module.check_compile("inductor", torch.device("cuda"))  # GPU code needs no C++ compiler
    device_module.check_compile("aot_eager", torch.device("cpu"))
    assert asked == []
