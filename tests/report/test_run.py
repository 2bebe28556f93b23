"""A run directory as the report reads it: which checkpoint, which files, the JSON of other commands, labels, and
every error message in full."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from visionlab.errors import RunDirError
from visionlab.report import Run, load_run, load_runs

from .builders import make_run


def _raises(message: str):
    return pytest.raises(RunDirError, match=f"^{re.escape(message)}$")


def test_epochs_checkpoint_resume_and_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    run = load_run(run_dir)
    assert run.path == run_dir and run.label == "run" and run.config["lr"] == 0.002
    assert [r["type"] for r in run.records] == ["step", "epoch", "epoch"]
    assert [e["epoch"] for e in run.epochs] == [0, 1]
    assert run.checkpoint is None and run.resume == run_dir / "model_best.pth.tar"
    (run_dir / "checkpoint.pth.tar").write_bytes(b"x")
    assert run.checkpoint == run.resume == run_dir / "checkpoint.pth.tar"
    (run_dir / "model_best.pth.tar").write_bytes(b"x")
    assert run.checkpoint == run.resume == run_dir / "model_best.pth.tar"  # the best one first
    assert run.file("config.yaml") == run_dir / "config.yaml"
    assert run.file("attack", "attack.json") is None and run.attack_result() is None and run.sweep_rows() is None
    (run_dir / "attack").mkdir()
    assert run.file("attack") is None  # a folder is not a file
    assert load_run(run_dir, "given").label == "given"


def test_attack_and_sweep_json(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    run = load_run(run_dir)
    (run_dir / "attack").mkdir()
    (run_dir / "attack" / "attack.json").write_text('{"n": 3, "name": "\\u00e9"}', encoding="utf-8")
    assert run.attack_result() == {"n": 3, "name": "é"}
    (run_dir / "robustness").mkdir()
    sweep = run_dir / "robustness" / "sweep.json"
    row = dict(model="m", sweep="eps", norm="linf", eps=0.1, steps=1, n=8, clean_top1=50.0, robust_top1=25.0)
    sweep.write_text(json.dumps([row, {**row, "extra": 1}]))
    assert run.sweep_rows() == [row, {**row, "extra": 1}]
    for missing in sorted(row):
        sweep.write_text(json.dumps([row, {k: v for k, v in row.items() if k != missing}]))
        keys = "['clean_top1', 'eps', 'model', 'n', 'norm', 'robust_top1', 'steps', 'sweep']"
        with _raises(f"{sweep}: row 2 lacks one of {keys}"):
            run.sweep_rows()
    sweep.write_text(json.dumps([row, [1, 2]]))
    with _raises(f"{sweep}: row 2 lacks one of {keys}"):
        run.sweep_rows()
    sweep.write_text(json.dumps(row))
    with _raises(f"{sweep}: expected a JSON list, got dict"):
        run.sweep_rows()
    (run_dir / "attack" / "attack.json").write_text("[1]")
    with _raises(f"{run_dir / 'attack' / 'attack.json'}: expected a JSON object, got list"):
        run.attack_result()
    (run_dir / "attack" / "attack.json").write_text("{")
    with pytest.raises(RunDirError, match=rf"^{re.escape(str(run_dir / 'attack' / 'attack.json'))}: not JSON \(.+\)$"):
        run.attack_result()
    (run_dir / "attack" / "attack.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(RunDirError, match=r": not JSON \('utf-8' codec can't decode byte 0xff"):
        run.attack_result()


def test_load_run_errors_in_full(tmp_path: Path) -> None:
    with _raises(f"{tmp_path / 'nowhere'}: no such run directory"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "f").write_text("x")
    with _raises(f"{tmp_path / 'f'}: not a directory (a run directory holds config.yaml and metrics.jsonl)"):
        load_run(tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with _raises(
        f"{tmp_path / 'empty'}: not a run directory (no config.yaml or metrics.jsonl; `visionlab train --out DIR` "
        "writes one)"
    ):
        load_run(tmp_path / "empty")
    run_dir = make_run(tmp_path, "run")
    config = run_dir / "config.yaml"
    config.write_text("- a\n")
    with _raises(f"{config}: not a mapping of settings (got list)"):
        load_run(run_dir)
    config.write_text("a: [\n")
    with pytest.raises(RunDirError, match=rf"^{re.escape(str(config))}: not YAML \(while parsing"):
        load_run(run_dir)


def test_an_epoch_record_the_curves_cannot_draw_is_named_by_line(tmp_path: Path) -> None:
    """A hand-edited metrics.jsonl whose epoch record lacks val_loss fails when the run is read, naming file and
    line, before any figure is drawn (it was a bare KeyError from the loss panel)."""
    from visionlab.errors import UserError

    run_dir = make_run(tmp_path, "run")
    metrics = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    number = 1 + next(i for i, r in enumerate(records) if r["type"] == "epoch")
    del records[number - 1]["val_loss"]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UserError) as caught:
        load_run(run_dir)
    assert str(caught.value) == f"{metrics}:{number}: epoch record without a number for val_loss"


def test_one_of_the_two_files_is_enough(tmp_path: Path) -> None:
    only_config = make_run(tmp_path, "c")
    (only_config / "metrics.jsonl").unlink()
    run = load_run(only_config)
    assert run.records == [] and run.config["model"] == "simplenet"
    only_metrics = make_run(tmp_path, "m")
    (only_metrics / "config.yaml").unlink()
    run = load_run(only_metrics)
    assert run.config == {} and len(run.records) == 3
    (only_metrics / "config.yaml").write_text("model: é\n", encoding="utf-8")
    assert load_run(only_metrics).config == {"model": "é"}
    assert load_run(tmp_path / "m" / ".." / "m").label == "m"  # the resolved name


def test_labels_of_colliding_runs(tmp_path: Path) -> None:
    a, b, c = make_run(tmp_path / "x", "run"), make_run(tmp_path / "y", "run"), make_run(tmp_path / "y", "other")
    assert [r.label for r in load_runs([a, c, b])] == ["x/run", "other", "y/run"]
    assert [r.label for r in load_runs([a, a, c, a])] == ["x/run", "x/run (2)", "other", "x/run (4)"]
    assert [r.label for r in load_runs([c, c])] == ["y/other", "y/other (2)"]
    assert [r.label for r in load_runs([str(tmp_path / "x" / ".." / "y" / "run")])] == ["run"]
    assert all(isinstance(r, Run) for r in load_runs([a]))


def test_the_runs_of_the_conv_folder_are_read_with_the_run(tmp_path: Path) -> None:
    """RUN/conv/* holds the short run make demo trains with each convolution: read with RUN, by name, labelled
    conv/NAME; a folder holding neither file, or a plain file, is no run; a bad file in one fails the whole read."""
    run_dir = make_run(tmp_path, "run")
    assert load_run(run_dir).conv == []
    custom, native = make_run(run_dir / "conv", "custom", {"conv": "custom"}), make_run(run_dir / "conv", "native")
    (custom / "metrics.jsonl").unlink()  # config.yaml alone is a run
    (native / "config.yaml").unlink()  # so is metrics.jsonl alone
    (run_dir / "conv" / "tensorboard").mkdir()
    (run_dir / "conv" / "notes.txt").write_text("x")
    run = load_run(run_dir)
    assert [(r.label, r.path, r.config.get("conv"), len(r.records)) for r in run.conv] == [
        ("conv/custom", custom, "custom", 0), ("conv/native", native, None, 3)
    ]  # fmt: skip
    assert run.label == "run" and [r.conv for r in run.conv] == [[], []]
    (custom / "config.yaml").write_text("- a\n")
    with _raises(f"{custom / 'config.yaml'}: not a mapping of settings (got list)"):
        load_run(run_dir)
