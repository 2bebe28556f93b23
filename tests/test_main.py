"""``main.py``: every flag of the original, its defaults, and its translation to ``visionlab``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from visionlab.engine import load_checkpoint
from visionlab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("main", ROOT / "main.py")
main_py = importlib.util.module_from_spec(spec)
sys.modules["main"] = main_py
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
