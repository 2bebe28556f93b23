"""``visionlab robustness`` in process over tiny untrained checkpoints, with recording stand-ins for the sweep and
its two plots: what each checkpoint's sweep is handed, the files written and the table printed whole, and the
ranges refused, each naming its flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import visionlab.robustness as robustness
import visionlab.runtime.distributed as distributed
from visionlab.cli import main
from visionlab.runtime.distributed import DistContext

from .builders import (
    batch_labels,
    tiny_checkpoint,
    val_labels,
)


class _Sweep:
    """Records ``sweep``'s arguments and returns two rows per call, named by its label."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model, loader, device, eps_list, steps_list, **kwargs) -> list[dict[str, Any]]:
        self.calls.append({"training": model.training, "batches": batch_labels(loader), "device": device,
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
    a, b = tiny_checkpoint(tmp_path, run="a"), tiny_checkpoint(tmp_path, run="b")
    out = tmp_path / "cmp" / "deep"  # made with its parent
    argv = ["robustness", "--resume", str(a), str(b), "--labels", "first", "second", "--eps", "0", "0.05",
            "--steps", "1", "3", "--at-eps", "0.07", "--at-steps", "4", "--limit-val", "5", "-b", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    labels = val_labels(a, 5)
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
    a, b = tiny_checkpoint(tmp_path, run="a"), tiny_checkpoint(tmp_path, run="b")
    monkeypatch.chdir(b.parent)
    (a.parent / "robustness").mkdir()  # an earlier comparison's folder is reused
    resume = [str(b), str(a), "model_best.pth.tar", str(a.parent / "." / a.name)]
    assert main(["robustness", "--resume", *resume, "--no-progress"]) == 0
    assert [c["label"] for c in fake.calls] == ["b", "a", "model_best.pth", "a"]
    assert fake.calls[0]["batches"] == [val_labels(a, 24)]
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
    assert call["batches"] == [val_labels(ckpt, 6)[1:4:2], val_labels(ckpt, 6)[5:]]
    assert not (ckpt.parent / "robustness").exists() and swept[1] == [] and capsys.readouterr() == ("", "")
