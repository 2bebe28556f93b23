"""``--amp`` on a CPU without native bfloat16: detected from the CPU flags, and the trainer says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionlab.engine import TrainConfig, Trainer
from visionlab.engine import trainer as trainer_module
from visionlab.runtime import cpu_has_native_bf16


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


@pytest.mark.parametrize(("native", "warned"), [(False, True), (True, False), (None, False)])
def test_amp_on_a_cpu_without_bf16_warns(tiny_fmnist, tmp_path, monkeypatch, capsys, native, warned) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    cfg = TrainConfig(data=tiny_fmnist, out=str(tmp_path / "r"), epochs=1, batch_size=32, workers=0, amp=True,
                      device="cpu", quiet=True, progress=False, tensorboard=False)  # fmt: skip
    Trainer(cfg, callbacks=[])
    assert ("no native bfloat16" in capsys.readouterr().err) is warned  # a warning, printed even when quiet
