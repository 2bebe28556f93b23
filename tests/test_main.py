"""``main.py``, the original front end: every flag of the original and its defaults, the whole ``visionlab`` command
lines it translates to, its device rule, its parser's texts and its exit statuses (with ``visionlab``'s own ``main``
replaced by a recorder), and its runs end to end on tiny data.

main.py is loaded under the module name ``main`` (its name when ``mutmut`` mutates it as ``main.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from visionlab.engine import load_checkpoint
from visionlab.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("main", ROOT / "main.py")
main_py = importlib.util.module_from_spec(_spec)
sys.modules["main"] = main_py
_spec.loader.exec_module(main_py)


# ------------------------------------------------------------------------------------------------ defaults and runs
def test_original_defaults() -> None:
    args = main_py.build_parser().parse_args(["../data"])
    assert (args.workers, args.epochs, args.warmup, args.clip_grad, args.start_epoch) == (4, 90, 5, 1.0, 0)
    assert (args.batch_size, args.lr, args.momentum, args.weight_decay, args.print_freq) == (256, 0.1, 0.9, 1e-4, 10)
    assert (args.resume, args.evaluate, args.attack, args.vis, args.gpu) == ("", False, False, False, 0)
    assert not (args.use_custom_conv or args.use_vit or args.use_resnet18)


def test_translation_to_visionlab_train() -> None:
    args = main_py.build_parser().parse_args(
        ["../data", "--epochs", "3", "-b", "32", "--lr", "0.01", "--wd", "0.05", "--use-custom-conv", "--gpu", "-1",
         "--resume", "ck.pth.tar", "-j", "2", "--warmup", "1", "--clip-grad", "0", "--start-epoch", "1", "-p", "5"]
    )  # fmt: skip
    argv = main_py.translate(args)
    assert argv[0] == "train"
    assert "--use-custom-conv" in argv
    expected = {
        "--data": "../data", "--device": "cpu", "--resume": "ck.pth.tar", "--epochs": "3", "-b": "32", "--lr": "0.01",
        "--wd": "0.05", "-j": "2", "--warmup": "1", "--clip-grad": "0.0", "--start-epoch": "1", "-p": "5",
    }  # fmt: skip
    for flag, value in expected.items():
        assert argv[argv.index(flag) + 1] == value, flag


def test_only_given_flags_are_passed_on_so_recipes_apply() -> None:
    argv = ["fashion-mnist", "--use-vit", "--epochs", "3", "--gpu", "-1"]
    args = main_py.build_parser().parse_args(argv)
    given = set(vars(main_py.build_parser(suppress_defaults=True).parse_args(argv)))
    assert given == {"data", "use_vit", "epochs", "gpu"}
    out = main_py.translate(args, given)
    assert out[out.index("--model") + 1] == "vit" and out[out.index("--epochs") + 1] == "3"
    assert "--lr" not in out and "-b" not in out  # from the ViT recipe, not the SimpleNet defaults


def test_evaluate_translates_to_eval_and_needs_resume() -> None:
    args = main_py.build_parser().parse_args(["../data", "-e", "--resume", "m.pth.tar", "--gpu", "-1"])
    assert main_py.translate(args)[:3] == ["eval", "--resume", "m.pth.tar"]
    with pytest.raises(UserError, match="needs --resume"):
        main_py.translate(main_py.build_parser().parse_args(["../data", "-e"]))


def test_use_resnet18_is_resnet18_with_imagenet_weights() -> None:
    parse = main_py.build_parser().parse_args
    argv = main_py.translate(parse(["fashion-mnist", "--use-resnet18", "--gpu", "-1", "--use-custom-conv"]))
    assert argv[argv.index("--model") + 1] == "resnet18" and argv[argv.index("--pretrained") + 1] == "imagenet"
    assert "--use-custom-conv" in argv
    resumed = main_py.translate(parse(["fashion-mnist", "--use-resnet18", "--gpu", "-1", "--resume", "c.pth.tar"]))
    assert "--pretrained" not in resumed  # the checkpoint holds the weights
    with pytest.raises(UserError, match="--use-vit and --use-resnet18: choose one model"):
        main_py.translate(parse(["fashion-mnist", "--use-resnet18", "--use-vit", "--gpu", "-1"]))


def test_use_resnet18_without_cached_weights_says_where_to_put_them(
    tiny_fmnist: str, hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [tiny_fmnist, "--use-resnet18", "--epochs", "1", "--gpu", "-1", "-j", "0", "--out", str(tmp_path / "r")]
    assert main_py.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("main.py: error: ImageNet weights for resnet18 not found")
    assert f"at {hub_cache / 'resnet18-f37072fd.pth'}" in err[0]


def test_use_resnet18_fine_tunes_the_cached_weights_end_to_end(
    tiny_fmnist: str, cached_imagenet_resnet18: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = [tiny_fmnist, "--use-resnet18", "--epochs", "1", "-b", "48", "--lr", "0.01", "--gpu", "-1", "-j", "0",
            "--out", str(run)]  # fmt: skip
    assert main_py.main(argv) == 0
    state = load_checkpoint(run / "model_best.pth.tar")
    args = state["model_args"]
    assert (args["name"], args["in_channels"], args["small_input"]) == ("resnet18", 1, True)
    assert args["mean"] == pytest.approx([0.449]) and args["std"] == pytest.approx([0.226])  # ImageNet, gray
    assert state["model"]["net.conv1.weight"].shape == (64, 1, 3, 3) and state["model"]["net.fc.weight"].shape[0] == 10
    err = capsys.readouterr().err
    assert f"pretrained weights: 120 tensors from {cached_imagenet_resnet18} (torchvision state dict)" in err
    assert "3-channel filters summed to 1 channel" in err and "7x7 kernel resized to 3x3" in err


def test_attack_and_vis_translate_to_the_original_attack_and_saliency() -> None:
    parse = main_py.build_parser().parse_args
    argv = main_py.translate(parse(["d", "-a", "--resume", "m.pth", "--gpu", "-1", "-v", "-b", "64", "--out", "o"]))
    assert argv[:3] == ["attack", "--resume", "m.pth"] and argv[argv.index("--attack") + 1] == "original"
    assert "--vis" in argv and argv[argv.index("-b") + 1] == "64" and argv[argv.index("--out") + 1] == "o"
    assert "--vis" not in main_py.translate(parse(["d", "-a", "--resume", "m.pth", "--gpu", "-1"]))
    args = parse(["d", "-e", "-v", "--resume", "m.pth", "--gpu", "-1"])
    assert main_py.translate(args)[0] == "eval"
    assert main_py.follow_ups(args) == [["saliency", "--resume", "m.pth", "--data", "d", "--device", "cpu"]]
    assert main_py.follow_ups(parse(["d", "-e", "--resume", "m.pth", "--gpu", "-1"])) == []
    with pytest.raises(UserError, match="-a/--attack needs --resume"):
        main_py.translate(parse(["d", "-a"]))
    with pytest.raises(UserError, match=r"-v/--vis needs -e .* or -a"):
        main_py.translate(parse(["d", "-v", "--gpu", "-1"]))


def test_main_py_trains_one_epoch_then_evaluates(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = [tiny_fmnist, "--epochs", "1", "-b", "32", "--lr", "0.01", "--gpu", "-1", "-j", "0", "--out", str(run)]
    assert main_py.main(argv) == 0
    assert (run / "model_best.pth.tar").is_file()
    assert main_py.main([tiny_fmnist, "-e", "--resume", str(run / "model_best.pth.tar"), "--gpu", "-1", "-j", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("* Acc@1")


# ------------------------------------------------------------------------------------------------ command lines
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
