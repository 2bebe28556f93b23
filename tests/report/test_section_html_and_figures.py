"""The report's sections as exact HTML (images reduced to ``data:PNG``, the run folder to ``RUN``): every table,
caption, note and suggested command of a run with every artefact, of several runs, of a conv pair, and the
figures the sections draw, read back from matplotlib."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from syrupy.assertion import SnapshotAssertion

from visionlab import robustness
from visionlab.report import ModelAnalysis, build_report, load_run, load_runs, sections
from visionlab.report.analysis import Sample

from .builders import epoch_record, fake_analysis, make_run


def _png(path: Path, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), 9).save(path, format=fmt)


def _sections(page: str, root: Path) -> dict[str, str]:
    """Each section's inner HTML (after its heading), images as ``data:PNG`` and ``root`` as ``ROOT``."""
    page = re.sub(r'data:image/png;base64,[^"]*', "data:PNG", page).replace(str(root), "ROOT")
    found = re.findall(r'<section id="([\w-]+)" aria-labelledby="\1-h"><h2 id="\1-h">[^<]*</h2>(.*?)</section>', page,
                       re.S)  # fmt: skip
    return dict(found)


def _rich_run(root: Path) -> Path:
    """A run with every artefact: attack grids and numbers, saliency grids, explanations, a sweep, robust validation
    epochs."""
    run = make_run(root, "run", {"robust_val": 16, "ema": None, "amp": True, "nesterov": False})
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        if r["type"] == "epoch":
            r["val_robust_top1"] = 30.0 + r["epoch"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name in ("original.png", "adversarial.png", "difference.png"):
        _png(run / "attack" / name)
    for name in ("images.png", "saliency.png", "saliency_heatmap.png"):
        _png(run / "saliency" / name)
    attack = {"attack": {"repr": "PGD(eps=0.1)"}, "n": 32, "clean_top1": 81.25, "robust_top1": 12.5,
              "robust_top5": 40.625}  # fmt: skip
    (run / "attack" / "attack.json").write_text(json.dumps(attack))
    _png(run / "explain" / "explain.png")
    explained = {"n": 2, "columns": ["image", "ig", "gradcam", "smoothgrad"], "methods": [
        {"name": "ig", "options": {"steps": 50, "rule": "gausslegendre", "baseline": "blur", "blur_sigma": None,
                                   "batch_size": 250},
         "completeness_gap": {"per_image": [0.001, -0.0002], "mean_abs": 0.0006, "max_abs": 0.001}},
        {"name": "gradcam", "options": {"layer": "net.features", "batch_size": 250}},
        {"name": "smoothgrad", "options": {"samples": 50, "noise_std": 0.1, "seed": 0, "batch_size": 250}},
    ]}  # fmt: skip
    explained["sanity"] = {"kind": "cascading", "granularity": "block", "num_images": 3, "steps": ["net.fc", "net.0"],
                           "methods": {"ig": {"threshold": 0.5}, "edge": {"threshold": 0.5}}, "table": [
        {"method": "ig", "passed": True, "falls_at": "net.0", "repeat_spearman": 1.0, "final_spearman": 0.12345,
         "final_ssim": 0.25},
        {"method": "edge", "passed": False, "falls_at": None, "repeat_spearman": 1.0, "final_spearman": 1.0,
         "final_ssim": 1.0},
    ]}  # fmt: skip
    explained["data_randomization"] = {"kind": "data", "num_images": 3, "steps": ["random labels"],
                                       "random_model": "runs/shuffled/model_best.pth.tar",
                                       "methods": {"ig": {"threshold": 0.5}}, "table": [
        {"method": "ig", "passed": True, "falls_at": "random labels", "repeat_spearman": 1.0, "final_spearman": 0.25,
         "final_ssim": 0.5},
        {"method": "edge", "passed": False, "falls_at": None, "repeat_spearman": 1.0, "final_spearman": 1.0,
         "final_ssim": 1.0},
    ]}  # fmt: skip
    explained["faithfulness"] = {"num_images": 3, "steps": 10, "table": [
        {"method": "ig", "deletion_auc": 0.1, "insertion_auc": 0.8},
        {"method": "random", "deletion_auc": 0.4, "insertion_auc": 0.5},
    ], "curves": {"ig": {"deletion": {"auc_sd": 0.05}, "insertion": {"auc_sd": 0.125}}}}  # fmt: skip
    for name in ("cascade.png", "similarity.png", "faithfulness.png"):
        _png(run / "explain" / name)
    (run / "explain" / "explain.json").write_text(json.dumps(explained))
    row = dict(model="m", norm="linf", n=16, clean_top1=75.0)
    rows = [{**row, "sweep": "eps", "eps": 0.0, "steps": 1, "robust_top1": 75.0},
            {**row, "sweep": "eps", "eps": 0.1, "steps": 1, "robust_top1": 25.0},
            {**row, "sweep": "steps", "eps": 0.1, "steps": 2, "robust_top1": 12.5}]  # fmt: skip
    (run / "robustness").mkdir()
    (run / "robustness" / "sweep.json").write_text(json.dumps(rows))
    corruptions = {"model": "run", "n": 16, "seed": 0, "corruptions": ["fog", "pixelate"], "severities": [1, 5],
                   "clean_top1": 75.0, "top1": {"fog": [50.0, 25.0], "pixelate": [62.5, 12.5]},
                   "mean_corruption_top1": 37.5, "baseline": {"model": "base"}, "ce": {"fog": 80.0, "pixelate": None},
                   "mce": None, "relative_mce": None}  # fmt: skip
    _png(run / "corruptions" / "corruptions.png")
    (run / "corruptions" / "corruptions.json").write_text(json.dumps(corruptions))
    return run


def _analysis_with_saliency(run: Path) -> ModelAnalysis:
    found = fake_analysis(run, ["a", "b", "c"])
    found.saliency_png = found.saliency_heatmap_png = found.samples[0].png
    return found


def _two_class_analysis(run: Path) -> ModelAnalysis:
    found = fake_analysis(run, ["x", "y"])
    found.confusion, found.samples = [[1, 1], [0, 0]], []
    return found


def _pages(tmp_path: Path) -> dict[str, dict[str, str]]:
    """The sections of the pages the tests below pin, by scenario."""
    rich = _rich_run(tmp_path)
    plain = make_run(tmp_path, "plain")
    a, b = make_run(tmp_path / "two", "a"), make_run(tmp_path / "two", "b", {"lr": 0.01, "conv": "custom"}, epochs=3)
    same = make_run(tmp_path / "same", "s1"), make_run(tmp_path / "same", "s2", {"out": "runs/y"})
    native, custom = make_run(tmp_path, "n", {"out": "runs/n"}), make_run(tmp_path, "c", {"conv": "custom"})
    with (custom / "metrics.jsonl").open("a") as f:  # images/s of two step records, and a longer epoch
        f.write(json.dumps(dict(type="step", epoch=1, step=6, lr=0.1, images_per_s=3000.0)) + "\n")
        f.write(json.dumps({**epoch_record(2, 55.0), "seconds": 7.0}) + "\n")
    odd = tmp_path / "odd"  # one setting, epochs without accuracy, an attack without numbers, a steps sweep
    odd.mkdir()
    (odd / "config.yaml").write_text("model: m\n")
    epochs = [dict(type="epoch", epoch=e, lr=0.5, train_loss=1.0, val_loss=2.0, val_robust_top1=9.0) for e in (0, 1)]
    epochs[1].pop("val_loss")
    epochs[1]["val_loss"] = 2.0
    (odd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    for name in ("original.png", "adversarial.png", "difference.png"):
        _png(odd / "attack" / name)
    (odd / "attack" / "attack.json").write_text('{"attack": "FGSM", "n": 5}')
    _png(odd / "explain" / "explain.png")  # the maps without their checks; a stale figure of an earlier --sanity
    _png(odd / "explain" / "cascade.png")
    (odd / "explain" / "explain.json").write_text('{"n": 1, "columns": ["image", "saliency"], "methods": []}')
    row = dict(model="m", sweep="steps", norm="l2", eps=0.25, steps=3, n=4, clean_top1=50.0, robust_top1=0.0)
    (odd / "robustness").mkdir()
    (odd / "robustness" / "sweep.json").write_text(json.dumps([row]))
    shares = make_run(tmp_path, "shares")
    pages = {
        "odd": build_report([load_run(odd)]),
        "shares": build_report([load_run(shares)], {shares: _two_class_analysis(shares)}),
        "rich": build_report([load_run(rich)], {rich: fake_analysis(rich, ["a", "b", "c"])}),
        "computed": build_report([load_run(plain)], {plain: _analysis_with_saliency(plain)}),
        "no-grids": build_report([load_run(plain)], {plain: fake_analysis(plain, ["a", "b", "c"])}),
        "failed": build_report([load_run(plain)], {plain: "no such file <x>"}),
        "untrained": build_report([load_run(plain)]),
        "two": build_report(load_runs([a, b]), {a: fake_analysis(a, ["a", "b", "c"])}),
        "same": build_report(load_runs(same)),
        "pair": build_report(load_runs([custom, native]), {r: fake_analysis(r, list("abc")) for r in (native, custom)}),
        **_sparse_pages(tmp_path / "sparse"),
        "nested": build_report([load_run(_run_with_a_conv_pair(tmp_path / "nested"))]),
    }
    return {name: _sections(page, tmp_path) for name, page in pages.items()}


def _run_with_a_conv_pair(root: Path) -> Path:
    """A run whose conv/ folder holds a shorter run with each convolution (as make demo writes it), a third run
    that differs in lr too (no pair), and a folder that is no run."""
    outer = make_run(root, "outer", {"seed": 0, "batch_size": 64, "limit_train": None})
    short = {"epochs": 3, "limit_train": 8, "limit_val": 4, "seed": 0, "batch_size": 64}
    make_run(outer / "conv", "native", {**short, "out": "o/conv/native", "tensorboard": False}, epochs=3)
    make_run(outer / "conv", "custom", {**short, "conv": "custom", "out": "o/conv/custom"}, epochs=1)
    make_run(outer / "conv", "other", {**short, "conv": "custom", "lr": 0.5})
    (outer / "conv" / "notes").mkdir()
    return outer


def _sparse_pages(root: Path) -> dict[str, str]:
    """Runs with little in them: no config.yaml, no finished epoch, attack.json without the attack, its repr or
    its image count; and one run with four settings (two tables of settings) and three monitored epochs."""
    full, bare, bare2 = root / "full", root / "bare", root / "bare2"
    for run in (full, bare, bare2):
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps(dict(type="step", epoch=0, step=1, lr=0.1)) + "\n")
    (full / "config.yaml").write_text("model: m\n")
    with (full / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(epoch_record(0, 40.0)) + "\n")
    (full / "attack").mkdir()
    (full / "attack" / "attack.json").write_text('{"attack": {"eps": 0.1}, "clean_top1": 50.0}')
    (bare / "attack").mkdir()
    (bare / "attack" / "attack.json").write_text('{"robust_top1": 10.0}')
    for run in (full, bare, bare2):  # grids; bare2 has no attack.json
        for name in ("original.png", "adversarial.png", "difference.png"):
            _png(run / "attack" / name)
    row = dict(sweep="eps", norm="linf", eps=0.5, steps=1, n=2, clean_top1=50.0, robust_top1=0.0)
    (full / "robustness").mkdir()
    (full / "robustness" / "sweep.json").write_text(json.dumps([{**row, "model": "m2"}, {**row, "model": 1}]))
    four = make_run(root, "four", epochs=3)
    (four / "config.yaml").write_text("a: 1\nb: 2\nc: 3\nd: 4\n")
    records = [json.loads(line) for line in (four / "metrics.jsonl").read_text().splitlines()]
    for r in records[1:]:  # the PGD monitor's top-1 of the last of three epochs is the one shown
        r["val_robust_top1"] = 10.0 * (r["epoch"] + 1)
    (four / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {
        "sparse": build_report(load_runs([full, bare, bare2])),
        "unconfigured": build_report(load_runs([bare, bare2])),
        "four": build_report([load_run(four)]),
    }


def _drawn(sweeps: dict[str, list[dict]]) -> list[tuple]:
    """The figure calls of the pages, in order: each figure_png gets the curves figure made just before (by number);
    the sweep plots get every row of the sweep file, a file named after the sweep in a visionlab-report- folder."""
    tmp = (True, True)
    return [
        ("curves_figure", ["odd"], ["odd"]), ("figure_png", 1, (), {}),
        ("plot_accuracy_vs_steps", sweeps["odd"], "steps.png", tmp),
        ("curves_figure", ["shares"], ["shares"]), ("figure_png", 2, (), {}),
        ("curves_figure", ["run"], ["run"]), ("figure_png", 3, (), {}),
        ("plot_accuracy_vs_eps", sweeps["run"], "eps.png", tmp),
        ("plot_accuracy_vs_steps", sweeps["run"], "steps.png", tmp),
        *[call for n in (4, 5, 6, 7) for call in (("curves_figure", ["plain"], ["plain"]), ("figure_png", n, (), {}))],
        ("curves_figure", ["two/a", "two/b"], ["a", "b"]), ("figure_png", 8, (), {}),
        ("curves_figure", ["same/s1", "same/s2"], ["s1", "s2"]), ("figure_png", 9, (), {}),
        ("curves_figure", ["c", "n"], ["c", "n"]), ("figure_png", 10, (), {}),
        ("curves_figure", ["n", "c"], ["n (native conv)", "c (custom conv)"]), ("figure_png", 11, (), {}),
        ("curves_figure", ["sparse/full"], ["full"]), ("figure_png", 12, (), {}),
        ("plot_accuracy_vs_eps", sweeps["sparse/full"], "eps.png", tmp),
        ("curves_figure", ["sparse/four"], ["four"]), ("figure_png", 13, (), {}),
        ("curves_figure", ["nested/outer"], ["outer"]), ("figure_png", 14, (), {}),
        ("curves_figure", ["nested/outer/conv/native", "nested/outer/conv/custom"],
         ["conv/native (native conv)", "conv/custom (custom conv)"]), ("figure_png", 15, (), {}),
    ]  # fmt: skip


@dataclass
class Pages:
    sections: dict[str, dict[str, str]]  # by scenario, then section id
    drawn: list[tuple]  # what the figure functions were called with, in order
    root: Path


def _recording_figures(mp: pytest.MonkeyPatch, root: Path) -> list[tuple]:
    """Replace the figure functions the sections call (matplotlib rendering is nearly all of the pages' cost) by
    stand-ins that record their exact arguments; their own output is pinned in tests/report/test_plots.py and by
    the tests below that render for real."""
    drawn: list[tuple] = []

    class Fig:  # what curves_figure returned: figure_png must be handed this very object
        def __init__(self, n: int) -> None:
            self.n = n

    def curves(run_dirs, labels=None):
        drawn.append(("curves_figure", [str(Path(d).relative_to(root)) for d in run_dirs], labels))
        return Fig(sum(call[0] == "curves_figure" for call in drawn))

    def png(fig, *args, **kwargs) -> bytes:
        drawn.append(("figure_png", fig.n if isinstance(fig, Fig) else fig, args, kwargs))
        return b"png"

    def plot(name: str):
        def draw(rows, out):
            out = Path(out)
            where = (out.parent.name.startswith("visionlab-report-"), out.parent.parent == Path(tempfile.gettempdir()))
            drawn.append((name, rows, out.name, where))
            out.write_bytes(b"png")
            return out

        return draw

    mp.setattr(sections, "curves_figure", curves)
    mp.setattr(sections, "figure_png", png)
    mp.setattr(robustness, "plot_accuracy_vs_eps", plot("plot_accuracy_vs_eps"))
    mp.setattr(robustness, "plot_accuracy_vs_steps", plot("plot_accuracy_vs_steps"))
    return drawn


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Pages:
    root = tmp_path_factory.mktemp("pages")
    with pytest.MonkeyPatch.context() as mp:
        drawn = _recording_figures(mp, root)
        return Pages(_pages(root), drawn, root)


def _one_tag_a_line(html: str) -> str:
    """A section's HTML with a line break between adjacent tags, so a change reads as a diff of a few lines of the
    golden file. Lossless here: a section holds no line break of its own (asserted)."""
    assert "\n" not in html
    return html.replace("><", ">\n<")


def test_section_html(pages: Pages, snapshot: SnapshotAssertion) -> None:
    """Every section of every scenario against the golden file ``__snapshots__/test_section_html_and_figures.ambr``
    (syrupy; after an intended change of the page: ``pytest tests/report/test_section_html_and_figures.py
    --snapshot-update``, then review the golden file's diff). One test, not one per section: mutation testing
    (mutmut) credits the module-scoped pages to the first test that builds them, and runs only that test on a
    mutant of the code they reach. The figures are recorded calls here (exact arguments), drawn for real by the
    other tests."""
    found = {f"{name}:{section}": _one_tag_a_line(html) for name, page in pages.sections.items()
             for section, html in page.items()}  # fmt: skip
    assert found == snapshot
    sweeps = {
        n: json.loads((pages.root / n / "robustness" / "sweep.json").read_text()) for n in ("run", "odd", "sparse/full")
    }
    assert pages.drawn == _drawn(sweeps)


def _capture_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the sections' figure_png by one that keeps each figure (closed by the test) and returns b"png"."""
    figures = []

    def keep(fig, dpi: int = 110) -> bytes:
        figures.append(fig)
        return b"png"

    monkeypatch.setattr(sections, "figure_png", keep)
    return figures


def test_heat_map_figure_and_the_twenty_largest_confusions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture_figures(monkeypatch)
    run_dir = make_run(tmp_path, "run")
    counts = [[5 if p == t else 0 for p in range(25)] for t in range(25)]
    for t in range(22):  # class t taken for class t + 1, t + 1 times
        counts[t][t + 1] = t + 1
    found = fake_analysis(run_dir, [f"k{k}" for k in range(25)])
    found.confusion = counts
    confusion = _sections(build_report([load_run(run_dir)], {run_dir: found}), tmp_path)["confusion"]
    rows = re.findall(r'<tr><th scope="row">(\w+)</th><td>(\w+)</td><td class="num">(\d+)</td><td class="num">'
                      r"([\d.]+)</td></tr>", confusion)  # fmt: skip
    expected = [(f"k{t}", f"k{t + 1}", str(t + 1), f"{100 * (t + 1) / (t + 6):.2f}") for t in range(21, 1, -1)]
    assert rows == expected  # the 20 largest, largest first
    assert confusion.startswith(
        '<figure><img src="data:PNG" alt="Confusion matrix heat map of 25 classes, each row the '
        'shares of its true class"><figcaption>Confusion matrix of model_best.pth.tar on 4 validation images (rows '
        'true, columns predicted)</figcaption></figure><div class="table-wrap"><table><caption>The 20 most frequent '
        'confusions</caption><thead><tr><th scope="col">true class</th><th scope="col">predicted as</th>'
        '<th scope="col">images</th><th scope="col">% of the true class</th></tr></thead>'
    )
    heat = figures[-1]
    try:
        assert tuple(heat.get_size_inches()) == (7.0, 6.0)
        ax, bar = heat.axes
        (image,) = ax.get_images()
        shares = [[c / sum(row) for c in row] for row in counts]
        assert np.allclose(image.get_array(), shares, rtol=0, atol=1e-12)
        assert image.get_cmap().name == "Blues" and image.get_clim() == (0, 1)
        assert (ax.get_xlabel(), ax.get_ylabel(), bar.get_ylabel()) == ("predicted class", "true class",
                                                                        "share of the true class")  # fmt: skip
        assert ax.get_position().x0 < 0.1  # laid out tight
    finally:
        for fig in figures:
            plt.close(fig)


def test_an_empty_row_of_the_heat_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture_figures(monkeypatch)
    run_dir = make_run(tmp_path, "run")
    found = fake_analysis(run_dir, [f"k{k}" for k in range(21)])
    found.confusion = [[0] * 21 for _ in range(21)]
    found.confusion[0][1] = 2
    confusion = _sections(build_report([load_run(run_dir)], {run_dir: found}), tmp_path)["confusion"]
    assert '<tbody><tr><th scope="row">k0</th><td>k1</td><td class="num">2</td><td class="num">100.00</td></tr>' \
        "</tbody>" in confusion  # fmt: skip
    shares = figures[-1].axes[0].get_images()[0].get_array()
    assert shares[0].tolist()[:2] == [0.0, 1.0] and shares[1].tolist() == [0.0] * 21  # 0 / max(0, 1)
    for fig in figures:
        plt.close(fig)


def test_curves_are_drawn_for_the_trained_runs_under_their_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _capture_figures(monkeypatch)
    young = tmp_path / "young"
    young.mkdir()
    (young / "metrics.jsonl").write_text(json.dumps({"type": "step", "epoch": 0, "step": 1, "lr": 0.1}) + "\n")
    native, custom = make_run(tmp_path, "n"), make_run(tmp_path, "c", {"conv": "custom"}, epochs=3)
    page = build_report(load_runs([native, young, custom]))
    try:
        curves, conv = figures

        def lr_lines(fig):
            return [(line.get_label(), len(line.get_xdata())) for line in fig.axes[2].get_lines()]

        assert lr_lines(curves) == [("n", 3), ("c", 4)]
        assert lr_lines(conv) == [("n (native conv)", 3), ("c (custom conv)", 4)]
    finally:
        for fig in figures:
            plt.close(fig)
    curves_html = _sections(page, tmp_path)["curves"]
    assert curves_html.startswith(
        '<p class="missing"><strong>Not available:</strong> young has no finished epoch in '
        "<code>ROOT/young/metrics.jsonl</code>: train it (<code>visionlab train --out ROOT/young</code>).</p>"
        '<figure><img src="data:PNG" alt="Training curves of n, c: loss, top-1 and top-5 accuracy, and learning '
        'rate against epoch"><figcaption>Loss, accuracy and learning rate against epoch, one colour per run.'
    )
    assert curves_html.count("<details open><summary>Per-epoch numbers of ") == 2


def test_page_title_introduction_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b&")
    page = build_report(load_runs([a, b]), generated="today <1>")
    version = sections._version()
    assert page.count("<title>visionlab report: a, b&amp;</title>") == 1
    assert (
        f"<header><h1>visionlab report: a, b&amp;</h1><p>Generated by visionlab {version} on today &lt;1&gt; from:</p>"
        f"<ul><li>a: <code>{a}</code></li><li>b&amp;: <code>{tmp_path}/b&amp;</code></li></ul></header>"
    ) in page
    assert re.findall(r'<section id="([\w-]+)"', page) == [i for i, _ in sections.SECTIONS]
    assert re.findall(r'<h2 id="[\w-]+-h">([^<]+)</h2>', page) == [t for _, t in sections.SECTIONS]

    class Now:
        @staticmethod
        def now():
            from datetime import datetime

            return datetime(2026, 3, 4, 5, 6, 7)

    monkeypatch.setattr(sections, "datetime", Now)
    assert "on 2026-03-04 05:06 from:" in build_report([load_run(a)])

    import importlib.metadata

    def no_version(name: str) -> str:
        assert name == "visionlab"
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_version)
    assert sections._version() == "(source tree)"
    with pytest.raises(ValueError, match=r"^build_report: no runs$"):
        build_report([])


def test_grids_that_are_not_png_files_are_missing(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    for name in ("original.png", "adversarial.png"):
        _png(run_dir / "attack" / name)
    _png(run_dir / "attack" / "difference.png", fmt="JPEG")  # decodes, but is no PNG
    adversarial = _sections(build_report([load_run(run_dir)]), tmp_path)["adversarial"]
    assert adversarial.startswith('<p class="missing"><strong>Not available:</strong> original / adversarial')
    _png(run_dir / "attack" / "difference.png")
    (run_dir / "saliency").mkdir()
    (run_dir / "saliency" / "saliency.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # a PNG header, no image
    page = _sections(build_report([load_run(run_dir)]), tmp_path)
    assert page["adversarial"].count("<img") == 3 and "<table>" not in page["adversarial"]
    assert page["saliency"] == ""  # the command's file is there (it wins), but nothing in it decodes


def test_conv_pairs_need_native_and_custom(tmp_path: Path) -> None:
    n1, n2 = make_run(tmp_path, "n1"), make_run(tmp_path, "n2", {"workers": 3})
    c = make_run(tmp_path, "c", {"conv": "custom", "print_freq": 5, "progress": False, "tensorboard": True,
                                 "data_root": "/d", "check_images": True})  # fmt: skip
    other = make_run(tmp_path, "o", {"conv": "other"})
    runs = load_runs([n1, c, n2, other])
    assert [(a.label, b.label) for a, b in sections.conv_pairs(runs)] == [("n1", "c"), ("n2", "c")]
    assert sections._differences(runs[0], runs[3]) == []  # only conv differs, but it is not native vs custom
    assert sections.conv_pairs([runs[0], runs[3]]) == []


def test_heat_map_scale_is_zero_to_one_and_a_row_of_one_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture_figures(monkeypatch)
    run_dir = make_run(tmp_path, "run")
    found = fake_analysis(run_dir, [f"k{k}" for k in range(21)])
    found.confusion = [[2 if p == t else 1 for p in range(21)] for t in range(21)]  # shares 2/22 and 1/22 only
    build_report([load_run(run_dir)], {run_dir: found})
    (image,) = figures[-1].axes[0].get_images()
    assert image.get_clim() == (0, 1)  # not the data's range
    assert np.allclose(image.get_array()[3, 3:5], [2 / 22, 1 / 22], rtol=0, atol=1e-12)
    found.confusion = [[0] * 21 for _ in range(21)]
    found.confusion[4][2] = 1  # one image of k4, taken for k2: all of its row
    confusion = _sections(build_report([load_run(run_dir)], {run_dir: found}), tmp_path)["confusion"]
    assert '<tbody><tr><th scope="row">k4</th><td>k2</td><td class="num">1</td><td class="num">100.00</td></tr>' \
        "</tbody>" in confusion  # fmt: skip
    assert figures[-1].axes[0].get_images()[0].get_array()[4].tolist()[:3] == [0.0, 0.0, 1.0]
    for fig in figures:
        plt.close(fig)


def test_conv_pair_with_an_untrained_run_and_epochs_without_seconds(tmp_path: Path) -> None:
    native, custom = make_run(tmp_path, "n", epochs=0), make_run(tmp_path, "c", {"conv": "custom"})
    records = [json.loads(line) for line in (custom / "metrics.jsonl").read_text().splitlines()]
    del records[-1]["seconds"]  # epoch 2 without its time: the mean is over epoch 1 alone
    records.append(dict(type="step", epoch=1, step=6, lr=0.1, images_per_s=3000.0, seconds=100.0))  # not an epoch
    (custom / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    conv = _sections(build_report(load_runs([native, custom])), tmp_path)["conv"]
    assert conv == (
        '<div class="table-wrap"><table><caption>The same training run with either convolution: simplenet on'
        " fashion-mnist, 2 epochs of all training images (batch ?, seed ?), validated on all validation images"
        '</caption><thead><tr><th scope="col"></th><th scope="col">n (native conv)</th>'
        '<th scope="col">c (custom conv)</th></tr></thead><tbody><tr><th scope="row">epochs</th><td class="num">0'
        '</td><td class="num">2</td></tr>'
        '<tr><th scope="row">val top-1 % (last epoch)</th><td class="num">—</td><td class="num">70.00</td></tr>'
        '<tr><th scope="row">val top-5 % (last epoch)</th><td class="num">—</td><td class="num">95.00</td></tr>'
        '<tr><th scope="row">best val top-1 %</th><td class="num">—</td><td class="num">70.00</td></tr>'
        '<tr><th scope="row">mean seconds per epoch</th><td class="num">—</td><td class="num">2.0</td></tr>'
        '<tr><th scope="row">mean training images/s</th><td class="num">1000</td><td class="num">2000</td></tr>'
        "</tbody></table></div>"
    )


def test_conv_best_skips_epochs_without_accuracy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch record without val_top1 (or with null) has no best to offer, as in the metrics table: the best is
    over the others, a dash when none has one (it was a bare KeyError)."""
    _capture_figures(monkeypatch)
    native, custom = make_run(tmp_path, "n"), make_run(tmp_path, "c", {"conv": "custom"})
    # native: epoch 1 null, epoch 2 scored (70); custom: epoch 1 without the key, epoch 2 null
    for run, (first, second) in ((native, (None, 70.0)), (custom, ("missing", None))):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        epochs = [r for r in records if r["type"] == "epoch"]
        assert epochs[1]["val_top1"] == 70.0
        for epoch, value in zip(epochs, (first, second), strict=True):
            epoch.pop("val_top1") if value == "missing" else epoch.update(val_top1=value)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    conv = _sections(build_report(load_runs([native, custom])), tmp_path)["conv"]
    assert '<tr><th scope="row">best val top-1 %</th><td class="num">70.00</td><td class="num">—</td></tr>' in conv


def test_a_setting_only_one_run_has_is_a_difference(tmp_path: Path) -> None:
    native, custom = make_run(tmp_path, "n"), make_run(tmp_path, "c", {"conv": "custom", "ema": 0.999})
    runs = load_runs([native, custom])
    assert sections._differences(*runs) == ["ema"] and sections.conv_pairs(runs) == []


def test_conv_note_lists_every_difference_and_an_unknown_conv(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b", {"lr": 0.01, "epochs": 3})
    conv = _sections(build_report(load_runs([a, b])), tmp_path)["conv"]
    assert " a and b differ in epochs, lr, not only in conv. For example " in conv
    for run in (a, b):  # no conv setting at all
        config = run / "config.yaml"
        config.write_text("".join(line + "\n" for line in config.read_text().splitlines() if "conv" not in line))
    (b / "config.yaml").write_text((a / "config.yaml").read_text())
    conv = _sections(build_report(load_runs([a, b])), tmp_path)["conv"]
    assert " a and b use the same conv (?). For example " in conv


def test_conv_means_that_are_not_finite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Infinite or NaN timings (an epoch timed as 0 s) print as Python's lowercase inf / nan, as every other number."""
    _capture_figures(monkeypatch)
    native, custom = make_run(tmp_path, "n"), make_run(tmp_path, "c", {"conv": "custom"})
    for run, seconds, rate in ((native, float("nan"), float("inf")), (custom, float("inf"), float("nan"))):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for r in records:
            r["seconds" if r["type"] == "epoch" else "images_per_s"] = seconds if r["type"] == "epoch" else rate
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    conv = _sections(build_report(load_runs([native, custom])), tmp_path)["conv"]
    assert (
        '<tr><th scope="row">mean seconds per epoch</th><td class="num">nan</td><td class="num">inf</td></tr>'
        '<tr><th scope="row">mean training images/s</th><td class="num">inf</td><td class="num">nan</td></tr>'
        '<tr><th scope="row">seconds per epoch, custom / native</th><td class="num">1</td><td class="num">nan</td>'
        "</tr></tbody>"
    ) in conv


def test_twenty_classes_three_cards_and_a_saliency_grid_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty classes are still a table of counts; the cards' summary counts the misclassified ones (one of three);
    a computed red overlay without its heat map is no grid pair: the section says to run visionlab saliency."""
    _capture_figures(monkeypatch)
    run = make_run(tmp_path, "run")
    found = fake_analysis(run, [f"k{k}" for k in range(20)])
    found.confusion = [[1 if p == t else 0 for p in range(20)] for t in range(20)]
    found.samples.append(Sample(2, 0, [(0, 1.0)], found.samples[0].png))
    found.saliency_png, found.saliency_heatmap_png = found.samples[0].png, None
    page = _sections(build_report([load_run(run)], {run: found}), tmp_path)
    assert page["confusion"].startswith('<div class="table-wrap"><table class="confusion"><caption>')
    assert page["predictions"].startswith(
        '<p class="note">The first 3 validation images, 1 misclassified (red frame, ✗), with the top-5 classes of '
        "model_best.pth.tar and their probabilities.</p>"
    )
    assert page["saliency"] == (
        '<p class="missing"><strong>Not available:</strong> saliency grids: run <code>visionlab saliency --resume '
        "ROOT/run/model_best.pth.tar</code>.</p>"
    )
