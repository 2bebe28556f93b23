"""``visionlab saliency / attack / robustness`` in process, fast: exact values instead of an end-to-end run.

Every test builds its own tiny untrained SimpleNet checkpoint (the trainer's ``model_best`` format) over a tiny
Fashion-MNIST-format set (function-scoped, so a mutation run credits every test that reaches a function), and
replaces the slow library calls (saliency, the attacks, ``robust_evaluate``, ``sweep``, the plots) by recording
stand-ins: what the commands hand them, the files they write and the lines they print are compared whole.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import visionlab.explain as explain
import visionlab.robustness as robustness
import visionlab.runtime.distributed as distributed
from visionlab.cli import analysis as cli_analysis
from visionlab.cli import build_parser, main
from visionlab.cli.model_flags import load_model
from visionlab.engine import TrainConfig, save_checkpoint
from visionlab.explain import TAG_ADVERSARIAL, TAG_ORIGINAL, TAG_SALIENCY, save_grid
from visionlab.models import build_model
from visionlab.runtime.distributed import DistContext

from .conftest import make_fashion_mnist

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KEYS = ("clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1", "n", "attack")


def _checkpoint(root: Path, n_test: int = 24, run: str = "run") -> Path:
    """A SimpleNet checkpoint (weights only, as model_best) whose config names a tiny Fashion-MNIST-format set."""
    fm = root / "fm"
    if not fm.exists():
        make_fashion_mnist(fm, n_train=4, n_test=n_test)
    torch.manual_seed(0)
    args = dict(name="simplenet", num_classes=10, in_channels=1, image_size=28, mean=[0.5], std=[0.25],
                conv="native")  # fmt: skip
    model = build_model(**args)
    path = root / run / "model_best.pth.tar"
    save_checkpoint(
        {"model": model.state_dict(), "config": TrainConfig(data=f"fashion-mnist:{fm}").to_dict(), "model_args": args,
         "recipe": "small", "epoch": 0, "step": 0, "best_top1": 0.0},
        path,
    )  # fmt: skip
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A fresh tiny checkpoint in ``tmp_path/run`` (24 validation images)."""
    return _checkpoint(tmp_path)


def _model(ckpt: Path) -> torch.nn.Module:
    from visionlab.engine import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(ckpt)).eval()


def _val(ckpt: Path) -> Any:
    from visionlab.data import load_dataset

    return load_dataset(f"fashion-mnist:{ckpt.parent.parent / 'fm'}").val


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _same_png(path: Path, images: torch.Tensor, tmp_path: Path) -> None:
    """``path`` holds exactly the grid ``save_grid`` draws of ``images``."""
    expected = save_grid(images, tmp_path / "expected" / path.name)
    np.testing.assert_array_equal(_pixels(path), _pixels(expected))


def _image_tags(directory: Path) -> dict[str, tuple[int, int]]:
    """``{tag: (width, height)}`` of the images TensorBoard logged in ``directory``."""
    events = EventAccumulator(str(directory))
    events.Reload()
    return {t: (events.Images(t)[0].width, events.Images(t)[0].height) for t in events.Tags()["images"]}


def _items(n: int, side: int = 4) -> list[tuple[torch.Tensor, int]]:
    """``n`` distinct one-channel images (each a constant i / n) labelled ``i % 10`` (numpy ints, as datasets do)."""
    return [(torch.full((1, side, side), i / n), np.int64(i % 10)) for i in range(n)]


# ------------------------------------------------------------------------------------------------ loading
def test_load_gives_the_checkpoint_model_in_eval_mode_its_val_split_and_the_cpu(ckpt: Path) -> None:
    """``_load`` rebuilds the stored weights, in eval mode, on the auto device, with the stored dataset."""
    args = build_parser().parse_args(["attack", "--resume", "ignored"])
    state, model, bundle, device = load_model(args, str(ckpt))  # the resume argument, not args.resume
    assert state["model_args"]["name"] == "simplenet" and state["epoch"] == 0
    assert model.training is False
    saved = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert device == torch.device("cpu") and next(model.parameters()).device == device
    assert len(bundle.val) == 24 and bundle.num_classes == 10 and bundle.class_names == FASHION


def test_load_checks_the_batch_size_and_the_device(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad ``-b`` or ``--device`` is one whole error line before anything is loaded."""
    assert main(["attack", "--resume", str(ckpt), "-b", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: -b/--batch-size: must be an integer >= 1, got 0\n"
    assert main(["attack", "--resume", str(ckpt), "--device", "tpu", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'\n"
    )


def test_load_names_the_checkpoint_it_loads_in_a_class_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``robustness`` loads each ``--resume`` in turn: a mismatch names that one checkpoint, not the list."""
    ckpt = _checkpoint(tmp_path)
    root = tmp_path / "three"
    for c in ("a", "b", "c"):
        for split in ("train", "val"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / c / "x.png")
    argv = ["robustness", "--resume", str(ckpt), "--data", f"folder:{root}", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"visionlab: error: folder:{root}: 3 classes, but {ckpt} predicts 10\n"


def test_load_takes_the_device_flag(ckpt: Path) -> None:
    """``--device cpu`` is handed to the device choice as given."""
    args = build_parser().parse_args(["attack", "--resume", str(ckpt), "--device", "cpu"])
    _, model, _, device = load_model(args, str(ckpt))
    assert device == torch.device("cpu") and next(model.parameters()).device == device


def _batches(loader: Any) -> list[list[int]]:
    return [y.tolist() for _, y in loader]


def test_loader_takes_the_first_items_in_order_in_batches_of_the_batch_size() -> None:
    """``_loader``: the first ``limit`` items (all when unset or larger), unshuffled, ``--batch-size`` each."""
    data = _items(7)
    args = argparse.Namespace(batch_size=3)
    assert _batches(cli_analysis._loader(data, args, None)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _batches(cli_analysis._loader(data, args, 5)) == [[0, 1, 2], [3, 4]]
    assert _batches(cli_analysis._loader(data, args, 7)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _batches(cli_analysis._loader(data, args, 9)) == [[0, 1, 2], [3, 4, 5], [6]]
    images = torch.cat([x for x, _ in cli_analysis._loader(data, args, 4)])
    assert torch.equal(images, torch.stack([x for x, _ in data[:4]]))


def test_loader_shards_the_limited_items_over_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun a rank evaluates items ``rank, rank + world, ...`` of the limited set."""
    data = _items(16)
    monkeypatch.setattr(distributed, "current_context", lambda: DistContext(rank=1, world_size=3))
    loader = cli_analysis._loader(data, argparse.Namespace(batch_size=2), 9)
    assert _batches(loader) == [[1, 4], [7]]


def test_first_stacks_the_first_n_images_and_their_integer_labels() -> None:
    """``_first``: at most ``n`` items, the images stacked and the labels an int64 tensor."""
    data = _items(5)
    images, labels = cli_analysis._first(data, 3)
    assert torch.equal(images, torch.stack([x for x, _ in data[:3]]))
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2]
    images, labels = cli_analysis._first(data, 9)
    assert images.shape == (5, 1, 4, 4) and labels.tolist() == [0, 1, 2, 3, 4]


def test_out_dir_is_out_or_beside_the_checkpoint_and_is_created(tmp_path: Path) -> None:
    """``--out`` (made with its parents, again without error), else ``CKPT_DIR/NAME``."""
    out = tmp_path / "a" / "b"
    args = argparse.Namespace(out=str(out))
    assert cli_analysis._out_dir(args, "unused/ckpt.pth", "attack") == out and out.is_dir()
    assert cli_analysis._out_dir(args, "unused/ckpt.pth", "attack") == out
    resume = tmp_path / "x" / "y" / "ckpt.pth"
    got = cli_analysis._out_dir(argparse.Namespace(out=None), str(resume), "saliency")
    assert got == tmp_path / "x" / "y" / "saliency" and got.is_dir()
    assert cli_analysis._out_dir(argparse.Namespace(out=""), str(resume), "attack") == tmp_path / "x" / "y" / "attack"


def test_tensorboard_logs_every_tag_as_a_grid_in_out_tensorboard(tmp_path: Path) -> None:
    """``_tensorboard`` writes each ``{tag: images}`` grid under ``OUT/tensorboard`` and closes the file."""
    cli_analysis._tensorboard(tmp_path, {"a/one": torch.zeros(3, 1, 4, 4), "b/two": torch.ones(12, 3, 4, 4)})
    assert [p.name for p in tmp_path.iterdir()] == ["tensorboard"]
    assert _image_tags(tmp_path / "tensorboard") == {"a/one": (3 * 6 + 2, 6 + 2), "b/two": (10 * 6 + 2, 2 * 6 + 2)}


# ------------------------------------------------------------------------------------------------ saliency
class _Saliency:
    """Records ``saliency``'s arguments; the maps are a fixed ramp, bright at the right edge."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append({"training": model.training, "images": images.clone(), **kwargs})
        ramp = torch.linspace(0, 1, images.shape[-1]) ** 4
        return ramp.expand(images.shape[0], images.shape[-2], -1).clone()


def test_saliency_command_hands_saliency_its_flags_and_writes_three_grids(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``saliency --target label``: the labels, SmoothGrad flags, seed-0 generator and batch size reach
    ``saliency``; images, red overlay and heat map grids are those of the maps; the printed lines are exact."""
    from visionlab.explain import heatmap_overlay, red_overlay

    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    out = tmp_path / "sal"
    argv = ["saliency", "--resume", str(ckpt), "--num", "13", "--target", "label", "--smoothgrad", "3",
            "--noise-std", "0.25", "-b", "7", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    val = _val(ckpt)
    images = torch.stack([val[i][0] for i in range(13)])
    labels = torch.tensor([int(val[i][1]) for i in range(13)])
    (call,) = fake.calls
    generator = call.pop("generator")
    target = call.pop("target")
    assert torch.equal(call.pop("images"), images) and torch.equal(target, labels)
    assert call == {"training": False, "smoothgrad_samples": 3, "noise_std": 0.25, "batch_size": 7}
    assert generator.initial_seed() == 0
    maps = fake(_model(ckpt), images)
    _same_png(out / "images.png", images, tmp_path)
    _same_png(out / "saliency.png", red_overlay(images, maps), tmp_path)
    _same_png(out / "saliency_heatmap.png", heatmap_overlay(images, maps), tmp_path)
    assert _image_tags(out / "tensorboard") == {TAG_SALIENCY: (10 * 30 + 2, 2 * 30 + 2)}
    with torch.no_grad():
        predicted = _model(ckpt)(images).argmax(1)
    names = ", ".join(
        FASHION[p] + ("" if p == y else " (x)") for p, y in zip(predicted.tolist(), labels.tolist(), strict=True)
    )
    assert " (x)" in names and names.count(" (x)") < 13  # both kinds of mark are shown
    assert capsys.readouterr().out.splitlines() == [
        "saliency of 13 images (label class), 10 per row:",
        f"  {names}",
        f"wrote {out / 'images.png'}",
        f"wrote {out / 'saliency.png'}",
        f"wrote {out / 'saliency_heatmap.png'}",
        f"TensorBoard: {out / 'tensorboard'} (tag {TAG_SALIENCY})",
    ]


def test_saliency_command_explains_the_prediction_by_default_beside_the_checkpoint(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``--target`` no target is handed over (the predicted class); ``--num`` past the split takes all;
    the defaults are no SmoothGrad, noise 0.1 and batch 250; files go to ``CKPT_DIR/saliency``."""
    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    assert main(["saliency", "--resume", str(ckpt), "--num", "30", "--no-progress"]) == 0
    (call,) = fake.calls
    call.pop("generator"), call.pop("images")
    assert call == {"training": False, "target": None, "smoothgrad_samples": 0, "noise_std": 0.1, "batch_size": 250}
    out = ckpt.parent / "saliency"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "saliency of 24 images (predicted class), 10 per row:"
    assert lines[2:] == [f"wrote {out / n}" for n in ("images.png", "saliency.png", "saliency_heatmap.png")] + [
        f"TensorBoard: {out / 'tensorboard'} (tag {TAG_SALIENCY})"
    ]
    with Image.open(out / "images.png") as img:
        assert img.size == (10 * 30 + 2, 3 * 30 + 2)


def test_saliency_of_one_image(ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--num 1``, the smallest allowed, explains one image: its grid is the image alone."""
    monkeypatch.setattr(explain, "saliency", _Saliency())
    assert main(["saliency", "--resume", str(ckpt), "--num", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "saliency of 1 images (predicted class), 10 per row:"
    with Image.open(ckpt.parent / "saliency" / "images.png") as img:
        assert img.size == (28, 28)


def test_saliency_refuses_num_zero(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--num 0`` is one whole error line."""
    assert main(["saliency", "--resume", str(ckpt), "--num", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --num: must be an integer >= 1, got 0\n"


@pytest.mark.parametrize("extra", [[], ["--smoothgrad", "0"]])
def test_saliency_refuses_a_noise_std_without_smoothgrad(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain map adds no noise: ``--noise-std`` alone is one whole line, before the (missing) checkpoint."""
    assert main(["saliency", "--resume", str(tmp_path / "missing.pth.tar"), "--noise-std", "0.2", *extra]) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --noise-std: only with --smoothgrad N (the noise of its N copies; the plain map has none)\n"
    )


def test_saliency_takes_a_noise_std_with_one_smoothgrad_sample(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--smoothgrad 1`` is the fewest samples that read ``--noise-std``; without it the noise is 0.1."""
    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    argv = ["saliency", "--resume", str(ckpt), "--num", "1", "--out", str(ckpt.parent / "s"), "--smoothgrad", "1"]
    assert main([*argv, "--noise-std", "0.2"]) == 0
    assert main(argv) == 0
    assert [(c["smoothgrad_samples"], c["noise_std"]) for c in fake.calls] == [(1, 0.2), (1, 0.1)]


# ------------------------------------------------------------------------------------------------ attack
class _Recorder:
    """A stand-in attack class: records its construction; called, it returns ``1 - images`` (a visible change)."""

    built: list[tuple[str, tuple, dict[str, Any]]]

    def __init__(self, name: str, built: list) -> None:
        self.name, self.built = name, built

    def __call__(self, *args: Any, **kwargs: Any) -> _FakeAttack:
        self.built.append((self.name, args, kwargs))
        return _FakeAttack(self.name)


class _FakeAttack:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls.append((images.clone(), labels.clone()))
        return 1 - images

    def __repr__(self) -> str:
        return f"Fake{self.name}(eps=0.1)"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every attack ``build_attack`` constructs, as ``(class name, args, kwargs)``; the generators as seeds."""
    made: list = []
    for name in ("PGD", "FGSM", "AutoAttack", "original_attack"):
        monkeypatch.setattr(robustness, name, _Recorder(name, made))
    return made


def _built(args: list[str], built: list, num_classes: int = 10) -> tuple[str, tuple, dict[str, Any]]:
    model = torch.nn.Linear(1, 1)
    parsed = build_parser().parse_args(["attack", "--resume", "x", *args])
    attack = cli_analysis.build_attack(parsed, model, num_classes)
    name, a, kw = built[-1]
    assert attack.name == name and a[0] is model
    if "generator" in kw:
        kw = {**kw, "generator": kw["generator"].initial_seed()}
    return name, a[1:], kw


def test_build_attack_hands_pgd_every_flag(built: list) -> None:
    """PGD gets eps, the step (default eps / 4), steps, norm, random start, restarts, target, early stop and a
    generator seeded with ``--seed``."""
    assert _built([], built) == ("PGD", (), dict(eps=0.1, step=0.025, steps=10, norm="linf", random_start=True,
                                                 restarts=1, targeted=None, early_stop=False, generator=0))  # fmt: skip
    argv = ["--eps", "0.3", "--step", "0.05", "--steps", "7", "--norm", "l2", "--restarts", "2", "--targeted",
            "least-likely", "--early-stop", "--seed", "5"]  # fmt: skip
    assert _built(argv, built) == ("PGD", (), dict(eps=0.3, step=0.05, steps=7, norm="l2", random_start=True,
                                                   restarts=2, targeted="least-likely", early_stop=True,
                                                   generator=5))  # fmt: skip
    assert _built(["--no-random-start"], built)[2]["random_start"] is False
    assert _built(["--eps", "0.2", "--step", "5e-324"], built)[2]["step"] == 5e-324  # the smallest step > 0


def test_build_attack_fgsm_autoattack_and_the_original(built: list) -> None:
    """FGSM gets the model, eps, the target and the norm; AutoAttack eps, norm, the class count and seed; the
    original the model. The flags that only say what fgsm and original do anyway are accepted."""
    assert _built(["--attack", "fgsm", "--eps", "0.2"], built) == ("FGSM", (0.2,), dict(targeted=None, norm="linf"))
    argv = ["--attack", "fgsm", "--eps", "0.5", "--norm", "l2", "--targeted", "least-likely", "--no-random-start"]
    assert _built(argv, built) == ("FGSM", (0.5,), dict(targeted="least-likely", norm="l2"))
    argv = ["--attack", "autoattack", "--eps", "0.3", "--norm", "l2", "--seed", "4"]
    assert _built(argv, built, num_classes=7) == ("AutoAttack", (), dict(eps=0.3, norm="l2", n_classes=7, seed=4))
    assert _built(["--attack", "autoattack"], built)[2] == dict(eps=0.1, norm="linf", n_classes=10, seed=0)
    assert _built(["--attack", "original"], built) == ("original_attack", (), {})
    argv = ["--attack", "original", "--targeted", "least-likely", "--no-random-start"]
    assert _built(argv, built) == ("original_attack", (), {})


_FGSM = "(one step of length --eps from the clean images)"
_AA = "(torchattacks' standard ensemble sets its own steps, restarts, starts and targets)"
_ORIGINAL = "(the course's fixed attack: 10 steps of 0.01 std in the 0.1 std ball towards the least-likely class)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attack", "fgsm", "--step", "0.01"], f"--step: not used by --attack fgsm {_FGSM}"),
        (["--attack", "fgsm", "--steps", "10"], f"--steps: not used by --attack fgsm {_FGSM}"),
        (["--attack", "fgsm", "--restarts", "1"], f"--restarts: not used by --attack fgsm {_FGSM}"),
        (["--attack", "fgsm", "--early-stop"], f"--early-stop: not used by --attack fgsm {_FGSM}"),
        (["--attack", "fgsm", "--seed", "0"], f"--seed: not used by --attack fgsm {_FGSM}"),
        (["--attack", "autoattack", "--targeted", "least-likely"],
         f"--targeted: not used by --attack autoattack {_AA}"),
        (["--attack", "autoattack", "--step", "0.01"], f"--step: not used by --attack autoattack {_AA}"),
        (["--attack", "autoattack", "--steps", "5"], f"--steps: not used by --attack autoattack {_AA}"),
        (["--attack", "autoattack", "--restarts", "2"], f"--restarts: not used by --attack autoattack {_AA}"),
        (["--attack", "autoattack", "--no-random-start"], f"--no-random-start: not used by --attack autoattack {_AA}"),
        (["--attack", "autoattack", "--early-stop"], f"--early-stop: not used by --attack autoattack {_AA}"),
        (["--attack", "original", "--eps", "0.3", "--steps", "3"], f"--eps: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--norm", "linf"], f"--norm: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--step", "0.01"], f"--step: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--steps", "10"], f"--steps: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--restarts", "1"], f"--restarts: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--early-stop"], f"--early-stop: not used by --attack original {_ORIGINAL}"),
        (["--attack", "original", "--seed", "0"], f"--seed: not used by --attack original {_ORIGINAL}"),
        (["--no-random-start", "--seed", "0"],
         "--seed: not used with --no-random-start (it seeds PGD's random starts)"),
        (["--attack", "original", "--eps", "0"], f"--eps: not used by --attack original {_ORIGINAL}"),
        (["--step", "0"], "--step: must be a number > 0, got 0.0"),
        (["--step=-1e-9"], "--step: must be a number > 0, got -1e-09"),
        (["--steps", "0"], "--steps: must be an integer >= 1, got 0"),
        (["--restarts", "0"], "--restarts: must be an integer >= 1, got 0"),
    ],
)  # fmt: skip
def test_attack_refuses_a_flag_the_attack_would_ignore_before_reading_the_checkpoint(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One whole line and exit 2, before the (here missing) checkpoint is read."""
    assert main(["attack", "--resume", str(tmp_path / "missing.pth.tar"), *argv]) == 2
    assert capsys.readouterr().err == f"visionlab: error: {message}\n"


def test_attack_fgsm_under_l2_towards_the_least_likely_class_runs_that_attack(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--attack fgsm --norm l2 --targeted least-likely`` runs the L2, targeted FGSM: its settings and numbers are
    the library's for that attack on the same images (the attack's values are tested against torchattacks)."""
    from torch.utils.data import DataLoader, Subset

    argv = ["attack", "--resume", str(ckpt), "--attack", "fgsm", "--norm", "l2", "--eps", "0.5", "--targeted",
            "least-likely", "--limit-val", "8", "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    model = _model(ckpt)
    attack = robustness.FGSM(model, 0.5, targeted="least-likely", norm="l2")
    expected = robustness.robust_evaluate(
        model, DataLoader(Subset(_val(ckpt), range(8)), batch_size=250), attack, "cpu"
    )
    assert result == {k: expected[k] for k in KEYS}
    assert result["attack"] == {
        "repr": "FGSM(norm='l2', eps=0.5, step=0.5, steps=1, random_start=False, restarts=1, targeted='least-likely', "
        "early_stop=False, loss='ce')",
        "name": "FGSM", "norm": "l2", "eps": 0.5, "step": 0.5, "steps": 1, "random_start": False, "restarts": 1,
        "targeted": "least-likely", "early_stop": False, "loss": "ce",
    }  # fmt: skip


def test_attack_options_fill_in_the_defaults_and_keep_what_is_given() -> None:
    """Unset options get the documented defaults (--step stays unset: PGD takes eps / 4); given ones are kept."""
    parse = build_parser().parse_args
    assert cli_analysis.attack_options(parse(["attack", "--resume", "x"])) == dict(
        norm="linf", eps=0.1, step=None, steps=10, restarts=1, no_random_start=False, targeted=None, early_stop=False,
        seed=0,
    )  # fmt: skip
    argv = ["attack", "--resume", "x", "--norm", "l2", "--eps", "0", "--step", "0.5", "--steps", "1", "--restarts",
            "1", "--seed", "7", "--targeted", "least-likely", "--early-stop"]  # fmt: skip
    assert cli_analysis.attack_options(parse(argv)) == dict(
        norm="l2", eps=0.0, step=0.5, steps=1, restarts=1, no_random_start=False, targeted="least-likely",
        early_stop=True, seed=7,
    )  # fmt: skip


def test_save_adversarial_grids_writes_the_first_20_and_their_difference(tmp_path: Path) -> None:
    """The first 20 images and labels go to the attack; original, adversarial and amplified difference are
    written as grids and logged to TensorBoard under the course's tags."""
    from visionlab.explain import amplified_difference

    data = _items(25, side=6)
    attack = _FakeAttack("A")
    paths = cli_analysis._save_adversarial_grids(torch.nn.Linear(1, 1), attack, data, tmp_path)
    assert paths == [tmp_path / "original.png", tmp_path / "adversarial.png", tmp_path / "difference.png"]
    ((images, labels),) = attack.calls
    assert torch.equal(images, torch.stack([x for x, _ in data[:20]]))
    assert labels.tolist() == [i % 10 for i in range(20)]
    _same_png(paths[0], images, tmp_path)
    _same_png(paths[1], 1 - images, tmp_path)
    _same_png(paths[2], amplified_difference(images, 1 - images), tmp_path)
    size = (10 * 8 + 2, 2 * 8 + 2)
    assert _image_tags(tmp_path / "tensorboard") == {TAG_ORIGINAL: size, TAG_ADVERSARIAL: size,
                                                     "Image/Adv_Difference": size}  # fmt: skip
    cli_analysis._save_adversarial_grids(torch.nn.Linear(1, 1), attack, data, tmp_path / "n3", n=3)
    assert attack.calls[1][0].shape == (3, 1, 6, 6)


class _Evaluate:
    """Records ``robust_evaluate``'s arguments (the labels of each batch) and returns fixed numbers."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.models: list[torch.nn.Module] = []

    def __call__(self, model, loader, attack, device, **kwargs) -> dict[str, Any]:
        self.models.append(model)
        self.calls.append({"training": model.training, "batches": _batches(loader), "attack": attack,
                           "device": device, **kwargs})  # fmt: skip
        return {"clean_top1": 62.5, "clean_top5": 91.25, "robust_top1": 12.5, "robust_top5": 50.0,
                "robust_and_clean_top1": 10.0, "n": 16, "attack": {"name": "pgd", "eps": 0.1},
                "seconds": 3.0}  # fmt: skip


@pytest.fixture
def evaluate(monkeypatch: pytest.MonkeyPatch) -> _Evaluate:
    fake = _Evaluate()
    monkeypatch.setattr(robustness, "robust_evaluate", fake)
    return fake


def _labels(ckpt: Path, n: int) -> list[int]:
    val = _val(ckpt)
    return [int(val[i][1]) for i in range(n)]


def test_attack_command_writes_attack_json_and_prints_three_lines(
    ckpt: Path, tmp_path: Path, built: list, evaluate: _Evaluate, capsys: pytest.CaptureFixture[str]
) -> None:
    """``attack``: the model in eval mode, the first ``--limit-val`` images in ``-b`` batches, the built attack,
    the device and progress reach ``robust_evaluate``; its seven numbers go to ``attack.json`` and stdout."""
    out = tmp_path / "atk"
    argv = ["attack", "--resume", str(ckpt), "--limit-val", "10", "-b", "4", "--eps", "0.2", "--out", str(out)]
    assert main(argv) == 0
    (call,) = evaluate.calls
    labels = _labels(ckpt, 10)
    assert call.pop("attack").name == "PGD" and built[0][2]["eps"] == 0.2
    assert built[0][1] == (evaluate.models[0],)  # the attack is built on the evaluated model
    assert call.pop("dist") == DistContext()
    assert call == {"training": False, "batches": [labels[:4], labels[4:8], labels[8:]],
                    "device": torch.device("cpu"), "progress": True}  # fmt: skip
    expected = {"clean_top1": 62.5, "clean_top5": 91.25, "robust_top1": 12.5, "robust_top5": 50.0,
                "robust_and_clean_top1": 10.0, "n": 16, "attack": {"name": "pgd", "eps": 0.1}}  # fmt: skip
    assert (out / "attack.json").read_text() == json.dumps(expected, indent=1) + "\n"
    assert sorted(p.name for p in out.iterdir()) == ["attack.json"]
    captured = capsys.readouterr()
    assert captured.err == f"wrote {out / 'attack.json'}\n"
    assert captured.out.splitlines() == [
        "FakePGD(eps=0.1) on 16 images",
        "* clean Acc@1 62.500 Acc@5 91.250",
        "* under attack Acc@1 12.500 Acc@5 50.000",
    ]


def test_attack_json_vis_and_no_progress(
    ckpt: Path, built: list, evaluate: _Evaluate, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` prints the seven numbers as one line; ``-v`` adds the three grids of the attacked images;
    ``--no-progress`` turns the progress off; without ``--out`` or ``--limit-val`` it is ``CKPT_DIR/attack`` and
    every image."""
    argv = ["attack", "--resume", str(ckpt), "--attack", "fgsm", "--json", "-v", "--no-progress"]
    assert main(argv) == 0
    (call,) = evaluate.calls
    assert call["progress"] is False and call["batches"] == [_labels(ckpt, 24)]
    out = ckpt.parent / "attack"
    names = ["attack.json", "original.png", "adversarial.png", "difference.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "tensorboard"])
    attack = call["attack"]
    assert attack.name == "FGSM" and len(attack.calls) == 1 and attack.calls[0][1].tolist() == _labels(ckpt, 20)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"wrote {out / n}" for n in names]
    assert captured.out == (
        '{"clean_top1": 62.5, "clean_top5": 91.25, "robust_top1": 12.5, "robust_top5": 50.0, '
        '"robust_and_clean_top1": 10.0, "n": 16, "attack": {"name": "pgd", "eps": 0.1}}\n'
    )


def test_attack_builds_autoattack_on_the_model_with_the_datasets_class_count(
    tmp_path: Path, built: list, evaluate: _Evaluate, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--attack autoattack`` gets the loaded model and the dataset's number of classes."""
    ckpt = _checkpoint(tmp_path)
    argv = ["attack", "--resume", str(ckpt), "--attack", "autoattack", "--eps", "0.05", "--seed", "3", "--limit-val",
            "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert built == [("AutoAttack", (evaluate.models[0],), dict(eps=0.05, norm="linf", n_classes=10, seed=3))]
    assert capsys.readouterr().out.splitlines()[0] == "FakeAutoAttack(eps=0.1) on 16 images"


def test_attack_on_a_rank_other_than_0_writes_and_prints_nothing(
    ckpt: Path, tmp_path: Path, built: list, evaluate: _Evaluate, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Rank 1 of 2 evaluates its shard without a progress bar, then leaves the writing to rank 0."""
    world = DistContext(rank=1, world_size=2)
    monkeypatch.setattr(distributed, "current_context", lambda: world)
    out = tmp_path / "atk"
    assert main(["attack", "--resume", str(ckpt), "--limit-val", "6", "--out", str(out), "-v"]) == 0
    (call,) = evaluate.calls
    assert call["dist"] is world and call["progress"] is False
    assert call["batches"] == [_labels(ckpt, 6)[1::2]]
    assert not out.exists() and capsys.readouterr() == ("", "")


def test_attack_refuses_limit_val_zero(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit-val 0`` is one whole error line."""
    assert main(["attack", "--resume", str(ckpt), "--limit-val", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --limit-val: must be an integer >= 1, got 0\n"


def test_write_json_writes_indented_json_and_a_newline(tmp_path: Path) -> None:
    """``_write_json``: ``json.dumps(indent=1)`` plus a newline, UTF-8; returns the path."""
    path = tmp_path / "v.json"
    assert cli_analysis._write_json({"a": [1, 2], "é": "ε"}, path) == path
    assert path.read_bytes() == b'{\n "a": [\n  1,\n  2\n ],\n "\\u00e9": "\\u03b5"\n}\n'


# ------------------------------------------------------------------------------------------------ robustness
class _Sweep:
    """Records ``sweep``'s arguments and returns two rows per call, named by its label."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model, loader, device, eps_list, steps_list, **kwargs) -> list[dict[str, Any]]:
        self.calls.append({"training": model.training, "batches": _batches(loader), "device": device,
                           "eps_list": eps_list, "steps_list": steps_list, **kwargs})  # fmt: skip
        label = kwargs["label"]
        return [
            {"model": label, "sweep": "eps", "eps": 0.03125, "steps": 10, "clean_top1": 87.5, "robust_top1": 43.75},
            {"model": label, "sweep": "steps", "eps": 0.1, "steps": 20, "clean_top1": 87.5, "robust_top1": 6.25},
        ]


@pytest.fixture
def swept(monkeypatch: pytest.MonkeyPatch) -> tuple[_Sweep, list]:
    """``sweep`` and the two plots replaced: the plots record ``(kind, rows, path)`` and write a stub file."""
    fake, plots = _Sweep(), []

    def plot(kind: str):
        def draw(rows, path):
            plots.append((kind, [r["model"] for r in rows], Path(path)))
            Path(path).write_text(kind)
            return Path(path)

        return draw

    monkeypatch.setattr(robustness, "sweep", fake)
    monkeypatch.setattr(robustness, "plot_accuracy_vs_eps", plot("eps"))
    monkeypatch.setattr(robustness, "plot_accuracy_vs_steps", plot("steps"))
    return fake, plots


def test_robustness_sweeps_each_checkpoint_and_writes_one_comparison(
    tmp_path: Path, swept: tuple[_Sweep, list], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each checkpoint's model (eval mode) and first ``--limit-val`` images reach ``sweep`` with the flags and
    its label; ``--out`` gets the CSV, JSON and two plots of all rows; the table and ``wrote`` lines are exact."""
    fake, plots = swept
    a, b = _checkpoint(tmp_path, run="a"), _checkpoint(tmp_path, run="b")
    out = tmp_path / "cmp" / "deep"  # made with its parent
    argv = ["robustness", "--resume", str(a), str(b), "--labels", "first", "second", "--eps", "0", "0.05",
            "--steps", "1", "3", "--at-eps", "0.07", "--at-steps", "4", "--limit-val", "5", "-b", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    labels = _labels(a, 5)
    common = {"training": False, "batches": [labels[:2], labels[2:4], labels[4:]], "device": torch.device("cpu"),
              "eps_list": [0.0, 0.05], "steps_list": [1, 3], "eps": 0.07, "steps": 4, "progress": True,
              "dist": DistContext()}  # fmt: skip
    assert fake.calls == [{**common, "label": "first"}, {**common, "label": "second"}]
    assert [(r["model"], r["sweep"]) for r in json.loads((out / "sweep.json").read_text())] == [
        ("first", "eps"), ("first", "steps"), ("second", "eps"), ("second", "steps")
    ]  # fmt: skip
    assert [line.split(",")[:2] for line in (out / "sweep.csv").read_text().splitlines()[1:]] == [
        ["first", "eps"], ["first", "steps"], ["second", "eps"], ["second", "steps"]
    ]  # fmt: skip
    names = ["first"] * 2 + ["second"] * 2
    assert plots == [("eps", names, out / "accuracy_vs_eps.png"), ("steps", names, out / "accuracy_vs_steps.png")]
    assert capsys.readouterr().out.splitlines() == [
        "model                   sweep       eps  steps  clean top-1  robust top-1",
        "first                   eps     0.03125     10        87.50         43.75",
        "first                   steps       0.1     20        87.50          6.25",
        "second                  eps     0.03125     10        87.50         43.75",
        "second                  steps       0.1     20        87.50          6.25",
        f"wrote {out / 'sweep.csv'}",
        f"wrote {out / 'sweep.json'}",
        f"wrote {out / 'accuracy_vs_eps.png'}",
        f"wrote {out / 'accuracy_vs_steps.png'}",
    ]


def test_robustness_without_out_writes_into_every_run_once_under_default_labels(
    tmp_path: Path, swept: tuple[_Sweep, list], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels default to the run directory's name (the file's stem when it has none); the comparison goes to
    each distinct run's ``robustness`` folder (new or not), in order; the defaults reach ``sweep`` (1000 images, the
    library's eps and steps of each sweep, the default lists) and ``--no-progress`` turns progress off."""
    fake, plots = swept
    a, b = _checkpoint(tmp_path, run="a"), _checkpoint(tmp_path, run="b")
    monkeypatch.chdir(b.parent)
    (a.parent / "robustness").mkdir()  # an earlier comparison's folder is reused
    resume = [str(b), str(a), "model_best.pth.tar", str(a.parent / "." / a.name)]
    assert main(["robustness", "--resume", *resume, "--no-progress"]) == 0
    assert [c["label"] for c in fake.calls] == ["b", "a", "model_best.pth", "a"]
    assert fake.calls[0]["batches"] == [_labels(a, 24)]
    assert {(c["eps_list"] == [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], c["steps_list"] == [1, 2, 5, 10, 20], c["eps"],
             c["steps"], c["progress"]) for c in fake.calls} == {(True, True, None, None, False)}  # fmt: skip
    outs = [b.parent / "robustness", a.parent / "robustness"]
    assert [p[2] for p in plots] == [o / f for o in outs for f in ("accuracy_vs_eps.png", "accuracy_vs_steps.png")]
    for out in outs:
        assert [r["model"] for r in json.loads((out / "sweep.json").read_text())] == [
            "b", "b", "a", "a", "model_best.pth", "model_best.pth", "a", "a"
        ]  # fmt: skip
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {o / f}" for o in outs for f in ("sweep.csv", "sweep.json", "accuracy_vs_eps.png",
                                                               "accuracy_vs_steps.png")]  # fmt: skip


def test_robustness_refuses_a_label_count_that_differs_and_limit_val_zero(
    ckpt: Path, swept: tuple[_Sweep, list], capsys: pytest.CaptureFixture[str]
) -> None:
    """Three labels for two checkpoints, or ``--limit-val 0``, is one whole error line, before any sweep."""
    argv = ["robustness", "--resume", str(ckpt), str(ckpt), "--labels", "x", "y", "z", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "visionlab: error: --labels: 3 labels for 2 checkpoints\n"
    assert main(["robustness", "--resume", str(ckpt), "--limit-val", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --limit-val: must be an integer >= 1, got 0\n"
    assert swept[0].calls == []


_RADIUS = "must be a number in [0, 1] (an L∞ radius in pixel units)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "1", "0"], "--steps: must be an integer >= 1, got 0"),
        (["--at-steps", "0"], "--at-steps: must be an integer >= 1, got 0"),
        (["--at-eps", "5"], f"--at-eps: {_RADIUS}, got 5.0"),
        (["--at-eps", "1.0000001"], f"--at-eps: {_RADIUS}, got 1.0000001"),
        (["--at-eps=-0.001"], f"--at-eps: {_RADIUS}, got -0.001"),
        (["--at-eps", "nan"], f"--at-eps: {_RADIUS}, got nan"),
        (["--eps", "0", "1.5"], f"--eps: {_RADIUS}, got 1.5"),
        (["--eps=-0.1"], f"--eps: {_RADIUS}, got -0.1"),
    ],
)
def test_robustness_refuses_a_radius_or_iteration_count_out_of_range_naming_its_flag(
    argv: list[str], message: str, tmp_path: Path, swept: tuple[_Sweep, list], capsys: pytest.CaptureFixture[str]
) -> None:
    """One whole line and exit 2 (no ZeroDivisionError traceback; --at-eps blamed as --at-eps), before the (here
    missing) checkpoint is read."""
    assert main(["robustness", "--resume", str(tmp_path / "missing.pth.tar"), *argv]) == 2
    assert capsys.readouterr().err == f"visionlab: error: {message}\n"
    assert swept[0].calls == []


def test_robustness_takes_the_bounds_of_each_range(ckpt: Path, swept: tuple[_Sweep, list]) -> None:
    """Radii 0 and 1 and one iteration are the nearest settings accepted; they reach the sweep as given."""
    argv = ["robustness", "--resume", str(ckpt), "--eps", "0", "1", "--steps", "1", "--at-eps", "1", "--at-steps",
            "1", "--limit-val", "2", "--out", str(ckpt.parent / "r"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--at-eps", "0"]) == 0
    assert [(c["eps_list"], c["steps_list"], c["eps"], c["steps"]) for c in swept[0].calls] == [
        ([0.0, 1.0], [1], 1.0, 1), ([0.0, 1.0], [1], 0.0, 1)
    ]  # fmt: skip


def test_robustness_on_a_rank_other_than_0_writes_and_prints_nothing(
    ckpt: Path, swept: tuple[_Sweep, list], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rank 1 of 2 sweeps its shard without progress and leaves the files and the table to rank 0."""
    world = DistContext(rank=1, world_size=2)
    monkeypatch.setattr(distributed, "current_context", lambda: world)
    assert main(["robustness", "--resume", str(ckpt), "--limit-val", "6", "-b", "2"]) == 0
    (call,) = swept[0].calls
    assert call["dist"] is world and call["progress"] is False
    assert call["batches"] == [_labels(ckpt, 6)[1:4:2], _labels(ckpt, 6)[5:]]
    assert not (ckpt.parent / "robustness").exists() and swept[1] == [] and capsys.readouterr() == ("", "")
