"""``main.py`` function by function: the whole ``visionlab`` command lines it translates to, its device rule, its
parser's texts and its exit statuses, with ``visionlab``'s own ``main`` replaced by a recorder.

main.py is loaded under the module name ``main`` (its name when ``mutmut`` mutates it as ``main.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from visionlab.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("main", ROOT / "main.py")
main_py = importlib.util.module_from_spec(_spec)
sys.modules["main"] = main_py
_spec.loader.exec_module(main_py)


def _translate(*argv: str, given: bool = False) -> list[str]:
    args = main_py.build_parser().parse_args(list(argv))
    if not given:
        return main_py.translate(args)
    return main_py.translate(args, set(vars(main_py.build_parser(suppress_defaults=True).parse_args(list(argv)))))


def test_the_parser_describes_itself_and_its_data_argument() -> None:
    """The --help texts of the front end and of DATA."""
    parser = main_py.build_parser()
    assert parser.description == "Scene recognition on MiniPlaces (visionlab's original front end)"
    (data,) = [a for a in parser._actions if a.dest == "data"]
    assert (data.metavar, data.help) == ("DATA", "dataset: PATH (e.g. ../data), fashion-mnist, miniplaces:PATH, ...")
    assert vars(main_py.build_parser(suppress_defaults=True).parse_args(["d", "--gpu", "1"])) == {"data": "d", "gpu": 1}


def test_gpu_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative: the CPU; no CUDA: the CPU; a visible GPU: cuda:N; past the last one: refused, whole."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (main_py._device(-1), main_py._device(0), main_py._device(5)) == ("cpu", "cpu", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert (main_py._device(-1), main_py._device(0), main_py._device(1)) == ("cpu", "cuda:0", "cuda:1")
    with pytest.raises(ConfigError) as caught:
        main_py._device(2)
    assert caught.value.field == "gpu"
    assert caught.value.message == "must be in [0, 2) (the visible GPUs) or negative for the CPU, got 2"


def test_train_with_every_original_flag_is_one_whole_command_line() -> None:
    """All flags given: the train command line, in order, values as visionlab reads them."""
    assert _translate(
        "d", "-j", "2", "--epochs", "3", "--warmup", "1", "--clip-grad", "0", "--start-epoch", "1", "-b", "32",
        "--lr", "0.01", "--momentum", "0.8", "--wd", "0.05", "-p", "5", "--use-custom-conv", "--resume", "c.pth",
        "--out", "o", "--tta", "--gpu", "-1",
    ) == [
        "train", "--data", "d", "--model", "simplenet", "--device", "cpu", "-j", "2", "--epochs", "3", "--warmup",
        "1", "--clip-grad", "0.0", "--start-epoch", "1", "-b", "32", "--lr", "0.01", "--momentum", "0.8", "--wd",
        "0.05", "-p", "5", "--use-custom-conv", "--resume", "c.pth", "--out", "o", "--tta",
    ]  # fmt: skip


def test_train_with_the_defaults_passes_every_default_or_only_what_was_given() -> None:
    """Without ``given`` every original default is passed on; with it only the flags typed."""
    assert _translate("d", "--gpu", "-1") == [
        "train", "--data", "d", "--model", "simplenet", "--device", "cpu", "-j", "4", "--epochs", "90", "--warmup",
        "5", "--clip-grad", "1.0", "--start-epoch", "0", "-b", "256", "--lr", "0.1", "--momentum", "0.9", "--wd",
        "0.0001", "-p", "10",
    ]  # fmt: skip
    assert _translate("d", "--gpu", "-1", "--use-vit", given=True) == [
        "train", "--data", "d", "--model", "vit", "--device", "cpu",
    ]  # fmt: skip
    assert _translate("d", "--gpu", "-1", "--use-resnet18", "-b", "8", given=True) == [
        "train", "--data", "d", "--model", "resnet18", "--device", "cpu", "--pretrained", "imagenet", "-b", "8",
    ]  # fmt: skip
    assert _translate("d", "--gpu", "-1", "--use-resnet18", "--resume", "r", given=True) == [
        "train", "--data", "d", "--model", "resnet18", "--device", "cpu", "--resume", "r",
    ]  # fmt: skip


def test_evaluate_and_attack_command_lines() -> None:
    """-e: eval with -b, -j and --tta; -a: the original attack with -b, --vis and --out; whole lines."""
    assert _translate("d", "-e", "--resume", "m", "--gpu", "-1", "--tta", "-b", "9", "-j", "1", given=True) == [
        "eval", "--resume", "m", "--data", "d", "--device", "cpu", "-b", "9", "-j", "1", "--tta",
    ]  # fmt: skip
    assert _translate("d", "-e", "--resume", "m", "--gpu", "-1", given=True) == [
        "eval", "--resume", "m", "--data", "d", "--device", "cpu",
    ]  # fmt: skip
    assert _translate("d", "-a", "--resume", "m", "--gpu", "-1", "-v", "-b", "4", "--out", "o", given=True) == [
        "attack", "--resume", "m", "--data", "d", "--device", "cpu", "--attack", "original", "-b", "4", "--vis",
        "--out", "o",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-a"], "-a/--attack needs --resume CKPT (the model to attack)"),
        (["-e"], "-e/--evaluate needs --resume CKPT (the model to evaluate)"),
        (["-v"], "-v/--vis needs -e (saliency maps of the evaluated model) or -a (adversarial samples)"),
        (["--use-vit", "--use-resnet18"], "--use-vit and --use-resnet18: choose one model"),
        (["-a", "-e", "--resume", "m"], "-e/--evaluate and -a/--attack: choose one (-a prints the clean accuracy too)"),
    ],
)
def test_flags_that_do_not_go_together(argv: list[str], message: str) -> None:
    """Each refusal, whole."""
    with pytest.raises(UserError) as caught:
        _translate("d", "--gpu", "-1", *argv)
    assert str(caught.value) == message


def test_follow_ups_draw_saliency_after_an_evaluation_with_vis() -> None:
    """-e -v: saliency of the evaluated model, with --out when given; nothing otherwise."""
    parse = main_py.build_parser().parse_args
    assert main_py.follow_ups(parse(["d", "-e", "-v", "--resume", "m", "--gpu", "-1", "--out", "o"])) == [
        ["saliency", "--resume", "m", "--data", "d", "--device", "cpu", "--out", "o"]
    ]
    assert main_py.follow_ups(parse(["d", "-e", "-v", "-a", "--resume", "m", "--gpu", "-1"])) == []
    assert main_py.follow_ups(parse(["d", "-v", "--gpu", "-1"])) == []


@pytest.fixture
def visionlab_main(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, Any]]]:
    """Replaces visionlab's main: records each command line and answers the statuses in ``statuses``."""
    calls: list[tuple[list[str], dict[str, Any]]] = []
    statuses = iter([0, 5, 0])

    def fake(argv: list[str], **kwargs: Any) -> int:
        calls.append((argv, kwargs))
        return next(statuses)

    monkeypatch.setattr(main_py, "visionlab_main", fake)
    return calls


def test_main_runs_each_command_as_main_py(visionlab_main: list[tuple[list[str], dict[str, Any]]]) -> None:
    """Each command runs under prog main.py and its flag table; the first failing status is returned."""
    assert main_py.main(["d", "-e", "-v", "--resume", "m", "--gpu", "-1"]) == 5
    assert visionlab_main == [
        (["eval", "--resume", "m", "--data", "d", "--device", "cpu"], dict(prog="main.py", flags=main_py._FIELD_FLAGS)),
        (["saliency", "--resume", "m", "--data", "d", "--device", "cpu"],
         dict(prog="main.py", flags=main_py._FIELD_FLAGS)),
    ]  # fmt: skip
    assert main_py.main(["d", "--gpu", "-1", "--epochs", "2"]) == 0
    assert visionlab_main[-1][0] == ["train", "--data", "d", "--model", "simplenet", "--device", "cpu", "--epochs", "2"]


def test_main_stops_at_the_first_failing_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing eval is not followed by its saliency maps."""
    calls: list[list[str]] = []
    monkeypatch.setattr(main_py, "visionlab_main", lambda argv, **kw: calls.append(argv) or 2)
    assert main_py.main(["d", "-e", "-v", "--resume", "m", "--gpu", "-1"]) == 2
    assert [c[0] for c in calls] == ["eval"]


def test_main_prints_a_translation_error_in_its_own_flags(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A refused combination or --gpu is one line under main.py, in main.py's flag names; nothing runs."""
    monkeypatch.setattr(main_py, "visionlab_main", lambda argv, **kw: pytest.fail("ran"))
    assert main_py.main(["d", "-v"]) == 2
    assert capsys.readouterr().err == (
        "main.py: error: -v/--vis needs -e (saliency maps of the evaluated model) or -a (adversarial samples)\n"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main_py.main(["d", "--gpu", "3"]) == 2
    assert capsys.readouterr().err == (
        "main.py: error: --gpu: must be in [0, 1) (the visible GPUs) or negative for the CPU, got 3\n"
    )


_TRAINING = "a training option"
_MODEL = "the checkpoint fixes the model"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-e", "--epochs", "5"], f"--epochs: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--warmup", "1"], f"--warmup: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--clip-grad", "0"], f"--clip-grad: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--start-epoch", "1"], f"--start-epoch: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--learning-rate", "0.1"], f"--lr/--learning-rate: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--momentum", "0.9"], f"--momentum: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--wd", "0"], f"--wd/--weight-decay: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "-p", "5"], f"-p/--print-freq: not used with -e/--evaluate ({_TRAINING})"),
        (["-e", "--use-custom-conv"], f"--use-custom-conv: not used with -e/--evaluate ({_MODEL})"),
        (["-e", "--use-vit"], f"--use-vit: not used with -e/--evaluate ({_MODEL})"),
        (["-e", "--use-resnet18"], f"--use-resnet18: not used with -e/--evaluate ({_MODEL})"),
        (["-e", "--out", "o"],
         "--out: not used with -e/--evaluate (-e writes no files; --out takes the saliency maps of -e -v)"),
        (["-a", "--epochs", "5"], f"--epochs: not used with -a/--attack ({_TRAINING})"),
        (["-a", "--use-vit"], f"--use-vit: not used with -a/--attack ({_MODEL})"),
        (["-a", "-j", "2"], "-j/--workers: not used with -a/--attack (the attack loads its images in this process)"),
        (["-a", "--tta"], "--tta: not used with -a/--attack (the attack has no test-time augmentation)"),
    ],
)  # fmt: skip
def test_main_refuses_a_flag_the_mode_would_not_read(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """-e and -a run eval and attack on the checkpoint: a training or model flag, or one the command lacks, is one
    whole line and exit 2, and nothing runs."""
    monkeypatch.setattr(main_py, "visionlab_main", lambda argv, **kw: pytest.fail("ran"))
    assert main_py.main(["d", "--resume", "m", "--gpu", "-1", *argv]) == 2
    assert capsys.readouterr().err == f"main.py: error: {message}\n"


def test_main_passes_on_every_flag_the_mode_reads(visionlab_main: list[tuple[list[str], dict[str, Any]]]) -> None:
    """The nearest accepted lines: -e with -b, -j, --tta, and --out with -v; -a with -b, -v and --out."""
    eval_argv = ["d", "-e", "--resume", "m", "--gpu", "-1", "-b", "8", "-j", "0", "--tta", "-v", "--out", "o"]
    assert main_py.main(eval_argv) == 5  # eval (0), then the saliency maps (5)
    assert [argv for argv, _ in visionlab_main] == [
        ["eval", "--resume", "m", "--data", "d", "--device", "cpu", "-b", "8", "-j", "0", "--tta"],
        ["saliency", "--resume", "m", "--data", "d", "--device", "cpu", "--out", "o"],
    ]
    assert main_py.main(["d", "-a", "--resume", "m", "--gpu", "-1", "-b", "8", "-v", "--out", "o"]) == 0
    assert visionlab_main[-1][0] == [
        "attack", "--resume", "m", "--data", "d", "--device", "cpu", "--attack", "original", "-b", "8", "--vis",
        "--out", "o",
    ]  # fmt: skip


def test_main_py_flag_table() -> None:
    """DATA, --lr/--learning-rate and --gpu replace visionlab's spellings; the rest is visionlab's."""
    from visionlab.cli import FIELD_FLAGS

    assert main_py._FIELD_FLAGS == {**FIELD_FLAGS, "data": "DATA", "lr": "--lr/--learning-rate", "device": "--gpu",
                                    "gpu": "--gpu"}  # fmt: skip
