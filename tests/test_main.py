"""``main.py``: every flag of the original, its defaults, and its translation to ``visionlab``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from visionlab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("visionlab_main_py", ROOT / "main.py")
main_py = importlib.util.module_from_spec(spec)
sys.modules["visionlab_main_py"] = main_py
spec.loader.exec_module(main_py)


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


def test_resnet18_still_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_py.main(["../data", "--use-resnet18"]) == 2
    err = capsys.readouterr().err
    assert "not available yet" in err and "ResNet" in err


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
