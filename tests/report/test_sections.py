"""The report's page without a model or browser: run directories written by hand, missing artefacts, several runs,
the conv comparison, escaping, and bad run directories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from visionlab.errors import RunDirError, UserError
from visionlab.report import SECTIONS, build_report, conv_pairs, curves_figure, load_run, load_runs

from .builders import fake_analysis, make_run


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', page, re.S)
    assert match, section_id
    return match.group(0)


def test_missing_artefacts_say_which_command_produces_them(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    run = load_run(run_dir)
    best = str(run_dir / "model_best.pth.tar")
    page = build_report([run], {run_dir: fake_analysis(run_dir, ["a", "b", "c"])})
    assert f"visionlab saliency --resume {best}" in _section(page, "saliency")
    assert f"visionlab attack --resume {best} -v" in _section(page, "adversarial")
    assert f"visionlab attack --resume {best}" in _section(page, "metrics")
    assert f"visionlab robustness --resume {best}" in _section(page, "robustness")
    assert "visionlab train --use-custom-conv" in _section(page, "conv")
    for section_id, _ in SECTIONS:  # no section is blank
        assert re.search(r"<(table|figure|p|ul)\b", _section(page, section_id)), section_id


def test_without_a_checkpoint_the_model_sections_say_train_it(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    page = build_report([load_run(run_dir)])
    for section_id in ("per-class", "confusion", "predictions", "saliency"):
        assert f"visionlab train --out {run_dir}" in _section(page, section_id)
    page = build_report([load_run(run_dir)], {run_dir: "fashion-mnist: no such directory /nowhere"})
    assert "could not evaluate" in _section(page, "confusion") and "/nowhere" in _section(page, "confusion")
    assert "--data-root DIR" in _section(page, "confusion")


def test_a_run_without_epochs_or_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "young"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "step", "epoch": 0, "step": 1, "lr": 0.1}) + "\n")
    page = build_report([load_run(run_dir)])
    assert "has no finished epoch" in _section(page, "curves")
    assert "config.yaml" in _section(page, "config") and "is missing" in _section(page, "config")


def test_numbers_are_in_tables(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    page = build_report([load_run(run_dir)], {run_dir: fake_analysis(run_dir, ["a", "b", "c"])})
    confusion = _section(page, "confusion")
    cells = re.findall(r"<td[^>]*>(\d+)</td>", confusion)
    assert [int(c) for c in cells] == [2, 0, 0, 0, 0, 1, 0, 0, 1]
    assert confusion.count('class="diag"') == 3
    per_class = _section(page, "per-class")
    assert re.search(r'<th scope="row">b</th><td class="num">1</td><td class="num">0</td>', per_class)
    assert "100.00" in per_class and "0.00" in per_class
    metrics = _section(page, "metrics")
    assert "70.00 (epoch 2)" in metrics  # last and best epoch
    assert "75.00 / 100.00 on 4 images" in metrics
    predictions = _section(page, "predictions")
    assert predictions.count('<li class="wrong">') == 1 and predictions.count('<li class="right">') == 1
    assert "2 validation images, 1 misclassified" in predictions.replace("first ", "")


def test_several_runs_overlay_their_curves(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b", {"lr": 0.01}, epochs=3)
    runs = load_runs([a, b])
    page = build_report(runs)
    curves = _section(page, "curves")
    assert curves.count("<img") == 1 and 'alt="Training curves of a, b:' in curves
    assert "one colour per run" in curves
    assert 'class="differs"' in _section(page, "config") and "lr (differs)" in page
    fig = curves_figure([a, b], ["a", "b"])
    loss = fig.axes[0]
    assert [line.get_label() for line in loss.lines] == ["a train", "a val", "b train", "b val"]
    assert {line.get_color() for line in loss.lines} == {"C0", "C1"}
    assert list(loss.lines[3].get_xdata()) == [1, 2, 3]
    assert "a and b differ in lr, not only in conv" in _section(page, "conv")  # so no comparison, and why


def test_two_runs_differing_only_in_conv_are_compared(tmp_path: Path) -> None:
    native = make_run(tmp_path, "n", {"out": "runs/n"})
    custom = make_run(tmp_path, "c", {"conv": "custom", "out": "runs/c", "workers": 4})
    other = make_run(tmp_path, "o", {"conv": "custom", "epochs": 5})
    runs = load_runs([custom, native, other])
    assert [(a.label, b.label) for a, b in conv_pairs(runs)] == [("n", "c")]
    conv = _section(build_report(runs), "conv")
    assert "n (native conv)" in conv and "c (custom conv)" in conv and conv.count("<img") == 1
    assert re.search(r"mean seconds per epoch</th><td class=\"num\">2.5</td><td class=\"num\">2.5</td>", conv)
    assert "seconds per epoch, custom / native" in conv


def test_the_pairs_given_come_first_then_the_pair_in_each_runs_conv_folder(tmp_path: Path) -> None:
    native = make_run(tmp_path, "n")
    custom = make_run(tmp_path, "c", {"conv": "custom"})
    inner_native = make_run(native / "conv", "a", {"out": "elsewhere"})  # n's own settings: no differences to list
    inner_custom = make_run(native / "conv", "b", {"conv": "custom"})
    conv = _section(build_report(load_runs([custom, native])), "conv")
    captions = re.findall(r"<th scope=\"col\">([^<]*) \(native conv\)</th><th scope=\"col\">([^<]*) \(custom", conv)
    assert captions == [("n", "c"), ("conv/a", "conv/b")] and conv.count("<img") == 2
    note = re.findall(r'<p class="note">.*?</p>', conv)
    assert note == [
        '<p class="note">A training run of its own, trained twice with the same flags and seed: with PyTorch\'s '
        f"convolution in <code>{inner_native}</code> and with the unfold/fold convolution in <code>{inner_custom}"
        "</code>. Compare its two columns with each other.</p>"
    ]
    assert conv.index("<caption>") < conv.index('<p class="note">')  # the given pair's table comes first


def test_many_classes_get_a_heat_map_and_the_largest_confusions(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    names = [f"class{k}" for k in range(25)]
    counts = [[5 if p == t else 0 for p in range(25)] for t in range(25)]
    counts[3][7], counts[9][2] = 4, 1  # class3 taken for class7 4 times (44% of its 9 images), class9 for class2 once
    found = fake_analysis(run_dir, names)
    found.confusion = counts
    confusion = _section(build_report([load_run(run_dir)], {run_dir: found}), "confusion")
    assert confusion.count("<img") == 1 and 'alt="Confusion matrix heat map of 25 classes' in confusion
    rows = re.findall(r'<tr><th scope="row">(\w+)</th><td>(\w+)</td><td class="num">(\d+)</td>', confusion)
    assert rows == [("class3", "class7", "4"), ("class9", "class2", "1")]
    assert "44.44" in confusion


def test_outside_text_is_escaped(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "<b>run&", {"model": '<script>alert("x")</script>'})
    page = build_report([load_run(run_dir)], {run_dir: fake_analysis(run_dir, ["<i>a</i>", "b&c", '"q"'])})
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;run&amp;" in page and "b&amp;c" in page and "&quot;q&quot;" in page


def test_artefacts_that_do_not_decode_are_reported_missing(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    (run_dir / "attack").mkdir()
    for name in ("original.png", "adversarial.png", "difference.png"):
        (run_dir / "attack" / name).write_bytes(b"not a png")
    page = build_report([load_run(run_dir)])
    assert "visionlab attack --resume" in _section(page, "adversarial") and "<img" not in _section(page, "adversarial")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nowhere", "no such run directory"),
        (lambda root: (root / "file.txt").write_text("x") and root / "file.txt", "not a directory"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "not a run directory"),
    ],
)
def test_bad_run_directories_are_typed_errors_naming_the_path(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(RunDirError, match=message) as info:
        load_run(path)
    assert str(path) in str(info.value)


def test_malformed_run_files_name_the_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    (run_dir / "config.yaml").write_text("- a\n- b\n")
    with pytest.raises(RunDirError, match=re.escape("config.yaml: not a mapping")):
        load_run(run_dir)
    (run_dir / "config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(RunDirError, match=re.escape("config.yaml: not YAML")):
        load_run(run_dir)
    (run_dir / "config.yaml").unlink()
    (run_dir / "metrics.jsonl").write_text("{}\nnot json\n")
    with pytest.raises(UserError, match=re.escape("metrics.jsonl:2")):
        load_run(run_dir)
    run = make_run(tmp_path, "sweep")
    (run / "robustness").mkdir()
    (run / "robustness" / "sweep.json").write_text('[{"model": "m"}]')
    with pytest.raises(RunDirError, match=re.escape("sweep.json: row 1 lacks")):
        build_report([load_run(run)])


def test_runs_with_the_same_directory_name_get_distinct_labels(tmp_path: Path) -> None:
    a, b = make_run(tmp_path / "x", "run"), make_run(tmp_path / "y", "run")
    assert [r.label for r in load_runs([a, b])] == ["x/run", "y/run"]
    assert [r.label for r in load_runs([a, a])] == ["x/run", "x/run (2)"]
