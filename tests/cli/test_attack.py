"""``visionlab attack`` in process over a tiny untrained checkpoint, with recording stand-ins for the attacks and
:func:`visionlab.robustness.robust_evaluate`: the attack each flag builds, the flags refused, ``attack.json`` byte for
byte, the grids pixel for pixel and the printed lines whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import visionlab.robustness as robustness
import visionlab.runtime.distributed as distributed
from visionlab.cli import analysis as cli_analysis
from visionlab.cli import build_parser, main
from visionlab.explain import TAG_ADVERSARIAL, TAG_ORIGINAL
from visionlab.runtime.distributed import DistContext

from .builders import (
    batch_labels,
    checkpoint_model,
    checkpoint_val,
    constant_items,
    image_tags,
    same_png,
    tiny_checkpoint,
    val_labels,
)

KEYS = ("clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1", "n", "attack")


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
    model = checkpoint_model(ckpt)
    attack = robustness.FGSM(model, 0.5, targeted="least-likely", norm="l2")
    expected = robustness.robust_evaluate(
        model, DataLoader(Subset(checkpoint_val(ckpt), range(8)), batch_size=250), attack, "cpu"
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

    data = constant_items(25, side=6)
    attack = _FakeAttack("A")
    paths = cli_analysis._save_adversarial_grids(torch.nn.Linear(1, 1), attack, data, tmp_path)
    assert paths == [tmp_path / "original.png", tmp_path / "adversarial.png", tmp_path / "difference.png"]
    ((images, labels),) = attack.calls
    assert torch.equal(images, torch.stack([x for x, _ in data[:20]]))
    assert labels.tolist() == [i % 10 for i in range(20)]
    same_png(paths[0], images, tmp_path)
    same_png(paths[1], 1 - images, tmp_path)
    same_png(paths[2], amplified_difference(images, 1 - images), tmp_path)
    size = (10 * 8 + 2, 2 * 8 + 2)
    assert image_tags(tmp_path / "tensorboard") == {TAG_ORIGINAL: size, TAG_ADVERSARIAL: size,
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
        self.calls.append({"training": model.training, "batches": batch_labels(loader), "attack": attack,
                           "device": device, **kwargs})  # fmt: skip
        return {"clean_top1": 62.5, "clean_top5": 91.25, "robust_top1": 12.5, "robust_top5": 50.0,
                "robust_and_clean_top1": 10.0, "n": 16, "attack": {"name": "pgd", "eps": 0.1},
                "seconds": 3.0}  # fmt: skip


@pytest.fixture
def evaluate(monkeypatch: pytest.MonkeyPatch) -> _Evaluate:
    fake = _Evaluate()
    monkeypatch.setattr(robustness, "robust_evaluate", fake)
    return fake


def test_attack_command_writes_attack_json_and_prints_three_lines(
    ckpt: Path, tmp_path: Path, built: list, evaluate: _Evaluate, capsys: pytest.CaptureFixture[str]
) -> None:
    """``attack``: the model in eval mode, the first ``--limit-val`` images in ``-b`` batches, the built attack,
    the device and progress reach ``robust_evaluate``; its seven numbers go to ``attack.json`` and stdout."""
    out = tmp_path / "atk"
    argv = ["attack", "--resume", str(ckpt), "--limit-val", "10", "-b", "4", "--eps", "0.2", "--out", str(out)]
    assert main(argv) == 0
    (call,) = evaluate.calls
    labels = val_labels(ckpt, 10)
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
    assert call["progress"] is False and call["batches"] == [val_labels(ckpt, 24)]
    out = ckpt.parent / "attack"
    names = ["attack.json", "original.png", "adversarial.png", "difference.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "tensorboard"])
    attack = call["attack"]
    assert attack.name == "FGSM" and len(attack.calls) == 1 and attack.calls[0][1].tolist() == val_labels(ckpt, 20)
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
    ckpt = tiny_checkpoint(tmp_path)
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
    assert call["batches"] == [val_labels(ckpt, 6)[1::2]]
    assert not out.exists() and capsys.readouterr() == ("", "")


def test_attack_refuses_limit_val_zero(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit-val 0`` is one whole error line."""
    assert main(["attack", "--resume", str(ckpt), "--limit-val", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --limit-val: must be an integer >= 1, got 0\n"
