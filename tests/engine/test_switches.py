"""The speed switches — ``--amp``, ``--channels-last``, ``--compile``, ``--sync-bn`` — each train a step on the CPU
or refuse with a clear message naming the field (the CLI shows it as the flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from visionlab.cli import main as cli_main
from visionlab.engine import TrainConfig, Trainer
from visionlab.errors import ConfigError
from visionlab.runtime import device as device_module


def _cfg(spec: str, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        data=spec, model="simplenet", out=str(out), epochs=1, batch_size=32, workers=0, device="cpu", lr=0.01,
        quiet=True, progress=False, tensorboard=False, limit_train=64, limit_val=16,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize(
    "switch", [dict(amp=True), dict(channels_last=True), dict(compile="aot_eager"), dict(amp=True, channels_last=True)]
)
def test_each_switch_trains_and_checkpoints_the_plain_model(tiny_fmnist: str, tmp_path: Path, switch: dict) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **switch), callbacks=[])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.fit()
    assert record["step"] == 2 and all(map(torch.isfinite, (torch.tensor(record["train_loss"]),)))
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the step reached the plain module
    saved = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)["model"]
    assert saved.keys() == before.keys()  # no "_orig_mod." (compile) or "module." (DDP) prefix


def test_compile_wraps_only_the_training_step(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", compile="aot_eager"), callbacks=[])
    assert isinstance(trainer.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.train_model._orig_mod is trainer.model and not isinstance(trainer.model, type(trainer.train_model))


def test_inductor_on_a_cpu_without_a_compiler_is_refused_up_front(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(device_module.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"no C\+\+ compiler was found") as info:
        Trainer(_cfg(tiny_fmnist, tmp_path / "run", compile="inductor"), callbacks=[])
    assert info.value.field == "compile"
    found = {"g++": "/usr/bin/g++"}
    monkeypatch.setattr(device_module.shutil, "which", found.get)
    device_module.check_compile("inductor", torch.device("cpu"))  # a compiler: accepted
    monkeypatch.setattr(device_module.shutil, "which", lambda name: None)
    device_module.check_compile("aot_eager", torch.device("cpu"))  # needs none


def test_sync_bn_on_the_cpu_is_refused_with_the_reason(tiny_fmnist: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SyncBatchNorm runs on GPUs only") as info:
        Trainer(_cfg(tiny_fmnist, tmp_path / "run", model="improved", sync_bn=True), callbacks=[])
    assert info.value.field == "sync_bn"


def test_cli_compile_flag(tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from visionlab.cli import build_parser

    args = build_parser().parse_args(["train", "--compile"])
    assert args.compile == "inductor"
    args = build_parser().parse_args(["train", "--compile", "aot_eager"])
    assert args.compile == "aot_eager"
    code = cli_main(["train", "--data", tiny_fmnist, "--compile", "fastest", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("visionlab: error: --compile: unknown torch.compile backend 'fastest'")
    assert not (tmp_path / "r").exists()


def test_an_architecture_argument_the_model_refuses_is_a_config_error(tiny_fmnist: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"improved: .*widt") as info:
        Trainer(_cfg(tiny_fmnist, tmp_path / "a", model="improved", model_kwargs={"widt": [8]}), callbacks=[])
    assert info.value.field == "model_kwargs"
    with pytest.raises(ConfigError, match="one positive entry per stage"):
        Trainer(_cfg(tiny_fmnist, tmp_path / "b", model="improved", model_kwargs={"depths": [0, 1, 1]}), callbacks=[])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_directory_holding_another_run_is_not_overwritten(tiny_fmnist: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(_cfg(tiny_fmnist, run), callbacks=[]).fit()
    before = (run / "model_best.pth.tar").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume") as info:
        Trainer(_cfg(tiny_fmnist, run, lr=0.02), callbacks=[])
    assert info.value.field == "out" and (run / "model_best.pth.tar").read_bytes() == before
    with pytest.raises(ConfigError, match="already holds a run"):  # fine-tuning from it into it would replace it
        Trainer(_cfg(tiny_fmnist, run), resume=run / "model_best.pth.tar", callbacks=[])
    resumed = Trainer(_cfg(tiny_fmnist, run, epochs=1), resume=run / "checkpoint.pth.tar", callbacks=[])
    assert resumed.run_dir == run  # an exact resume continues in its own directory
