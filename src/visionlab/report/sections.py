"""The sections of the HTML report, and the page that holds them (:func:`build_report`).

What the report computes and what it reads:

- **Computed on every report** (cheap: one forward pass over the validation split, one backward pass over a few
  images; :mod:`visionlab.report.analysis`): the top-1/top-5 of the checkpoint, per-class accuracy, the confusion
  matrix, the top-5 cards of the first validation images, and their saliency maps when ``visionlab saliency``
  has not written any.
- **Read from the run directory** (written by training or by commands that can take minutes to hours, which a
  report must not rerun unasked): the configuration and training curves (``config.yaml``, ``metrics.jsonl``),
  the saliency grids of ``visionlab saliency`` (its settings, e.g. SmoothGrad, win over the report's plain
  gradient), the methods side by side of ``visionlab explain`` (with its sanity check and deletion/insertion
  curves when run with ``--sanity --faithfulness``), the adversarial grids and numbers of ``visionlab attack -v``,
  the robustness sweep of ``visionlab robustness``, the corruption table and heat map of ``visionlab corruptions``,
  and the certified accuracy of ``visionlab certify``.

A section whose inputs are missing says which command produces them; it never stays blank or raises. The custom
vs native convolution comparison appears when two of the runs differ only in ``conv``, and for each run whose
``conv/`` folder holds two such runs (``make demo`` trains a short pair there: a pair the size of the run itself
would cost a second full training).
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from visionlab.report.analysis import ModelAnalysis, per_class_accuracy
from visionlab.report.html import Cell, Raw, code, esc, figure, img, missing, page, table
from visionlab.report.plots import curves_figure, figure_png
from visionlab.report.run import Run

__all__ = ["CONV_IGNORED", "SECTIONS", "build_report", "conv_pairs"]

# (id, heading) of every section, in page order.
SECTIONS = (
    ("config", "Configuration"),
    ("metrics", "Final metrics"),
    ("curves", "Training curves"),
    ("per-class", "Per-class accuracy"),
    ("confusion", "Confusion matrix"),
    ("predictions", "Validation images and top-5 predictions"),
    ("saliency", "Saliency maps"),
    ("explanations", "Explanations"),
    ("adversarial", "Original, adversarial and difference images"),
    ("robustness", "Robustness curves"),
    ("corruptions", "Common corruptions"),
    ("certified", "Certified robustness"),
    ("conv", "Custom vs native convolution"),
)
# Settings that say where and how verbosely a run was written, not what it computed: two runs that differ only
# in these and ``conv`` compare the two convolutions.
CONV_IGNORED = frozenset({"out", "workers", "print_freq", "progress", "tensorboard", "data_root", "check_images"})
# Up to this many classes the confusion matrix is a table of counts; beyond, a heat map and the largest confusions.
MAX_TABLE_CLASSES = 20

Analyses = Mapping[Path, "ModelAnalysis | str"]


def build_report(runs: Sequence[Run], analyses: Analyses | None = None, *, generated: str | None = None) -> str:
    """The report of ``runs`` as one HTML document.

    Args:
        runs: the run directories, read (:func:`~visionlab.report.run.load_runs`).
        analyses: per ``run.path``, what :func:`~visionlab.report.analysis.analyse` found for its checkpoint, or a
            message saying why it could not be evaluated; runs absent here had no checkpoint.
        generated: the "generated on" text (default: now).
    """
    if not runs:
        raise ValueError("build_report: no runs")
    analyses = analyses or {}
    bodies: dict[str, Callable[[], str]] = {
        "config": lambda: _config(runs),
        "metrics": lambda: _metrics(runs, analyses),
        "curves": lambda: _curves(runs),
        "per-class": lambda: _each(runs, lambda r: _per_class(r, _analysis(r, analyses, "the per-class accuracy"))),
        "confusion": lambda: _each(runs, lambda r: _confusion(r, _analysis(r, analyses, "the confusion matrix"))),
        "predictions": lambda: _each(runs, lambda r: _predictions(r, _analysis(r, analyses, "the predictions"))),
        "saliency": lambda: _each(runs, lambda r: _saliency(r, analyses)),
        "explanations": lambda: _each(runs, _explanations),
        "adversarial": lambda: _each(runs, _adversarial),
        "robustness": lambda: _each(runs, _robustness),
        "corruptions": lambda: _each(runs, _corruptions),
        "certified": lambda: _each(runs, _certified),
        "conv": lambda: _conv(runs, analyses),
    }
    # A model visionlab did not train has no configuration, training curves or convolution pair to show.
    shown = [(i, t) for i, t in SECTIONS if any(r.trained for r in runs) or i not in ("config", "curves", "conv")]
    labels = ", ".join(r.label for r in runs)
    when = generated or datetime.now().strftime("%Y-%m-%d %H:%M")
    listed = "".join(f"<li>{esc(r.label)}: {code(str(r.path))}</li>" for r in runs)
    intro = Raw(f"<p>Generated by visionlab {esc(_version())} on {esc(when)} from:</p><ul>{listed}</ul>")
    return page(f"visionlab report: {labels}", intro, [(i, t, bodies[i]()) for i, t in shown])


# ------------------------------------------------------------------------------------------------ helpers
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("visionlab")
    except PackageNotFoundError:
        return "(source tree)"


def _command(*parts: object) -> Raw:
    """A shell command, each argument quoted where the shell needs it."""
    return code(" ".join(shlex.quote(str(p)) for p in parts))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _num(value: object) -> Cell:
    return Cell(value, cls="num")


def _each(runs: Sequence[Run], body: Callable[[Run], str]) -> Raw:
    """``body`` of one run, or of each run under its own ``<h3>``."""
    if len(runs) == 1:
        return Raw(body(runs[0]))
    return Raw("".join(f"<h3>{esc(r.label)}</h3>{body(r)}" for r in runs))


def _analysis(run: Run, analyses: Analyses, what: str) -> ModelAnalysis | Raw:
    """The run's analysis, or the text saying why there is none and what to do."""
    found = analyses.get(run.path)
    if isinstance(found, ModelAnalysis):
        return found
    if isinstance(found, str):
        return missing(
            Raw(
                f"{esc(what)}: the report could not evaluate {code(str(run.resume))}: {esc(found)}. Fix that "
                f"(e.g. {_command('visionlab', 'report', run.path, '--data-root', 'DIR')} where the dataset lives) "
                "and run the report again."
            )
        )
    return missing(
        Raw(
            f"{esc(what)}: no checkpoint in {code(str(run.path))} (no epoch finished). Train it, e.g. "
            f"{_command('visionlab', 'train', '--out', run.path)}, then run "
            f"{_command('visionlab', 'report', run.path)} again."
        )
    )


def _png_file(path: Path | None) -> bytes | None:
    """The bytes of a PNG file that decodes, else None."""
    if path is None:
        return None
    try:
        with Image.open(path) as picture:
            if picture.format != "PNG":
                return None
            picture.load()
    except (OSError, UnidentifiedImageError):
        return None
    return path.read_bytes()


def _file_figure(run: Run, parts: tuple[str, ...], alt: str, caption: str | Raw) -> Raw | None:
    png = _png_file(run.file(*parts))
    return figure(png, alt, caption, cls="grid") if png is not None else None


def _file_figures(run: Run, folder: str, source: str, specs: Sequence[tuple[str, str, str]]) -> list[Raw | None]:
    """A grid figure per ``(file name, alt text, caption)`` of ``run/folder`` (None where the file is missing),
    each caption followed by ``source`` (which command wrote it, where)."""
    return [_file_figure(run, (folder, name), alt, Raw(f"{esc(caption)} ({source}).")) for name, alt, caption in specs]


# ------------------------------------------------------------------------------------------------ sections
def _config(runs: Sequence[Run]) -> Raw:
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.config if k not in keys]
    parts = [missing(Raw(f"{code(str(r.path / 'config.yaml'))} is missing.")) for r in runs if not r.config]
    if not keys:
        return Raw("".join(parts))
    if len(runs) == 1:  # one column of values: up to three tables side by side keep the page short
        run, size = runs[0], -(-len(keys) // 3)
        chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
        tables = [
            table(["setting", "value"], [[k, _setting(run.config.get(k))] for k in chunk],
                  caption=f"config.yaml ({i + 1} of {len(chunks)})" if len(chunks) > 1 else "config.yaml")
            for i, chunk in enumerate(chunks)
        ]  # fmt: skip
        return Raw("".join(parts) + '<div class="pair">' + "".join(tables) + "</div>")
    rows, classes = [], []
    for key in keys:
        values = [_setting(r.config.get(key, "—")) for r in runs]
        differs = len(set(values)) > 1
        rows.append([f"{key} (differs)" if differs else key, *values])
        classes.append("differs" if differs else "")
    caption = "config.yaml of each run (settings that differ are highlighted)"
    return Raw("".join(parts) + table(["setting", *(r.label for r in runs)], rows, caption=caption,
                                      row_classes=classes))  # fmt: skip


def _setting(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _metrics(runs: Sequence[Run], analyses: Analyses) -> Raw:
    rows = []
    for r in runs:
        epochs = r.epochs
        last = epochs[-1] if epochs else {}
        best = _best_epoch(r)
        found = analyses.get(r.path)
        evaluated = (
            f"{found.top1:.2f} / {found.top5:.2f} on {found.n} images ({found.checkpoint.name})"
            if isinstance(found, ModelAnalysis)
            else "—"
        )
        rows.append([
            r.label, _num(len(epochs)), _num(_pct(last.get("val_top1"))), _num(_pct(last.get("val_top5"))),
            _num(f"{_pct(best.get('val_top1'))} (epoch {best['epoch'] + 1})" if best else "—"),
            _num(f"{last['val_loss']:.4f}" if "val_loss" in last else "—"), evaluated,
        ])  # fmt: skip
    clean = table(
        ["run", "epochs", "val top-1 %", "val top-5 %", "best val top-1 %", "val loss", "top-1 / top-5 % (report)"],
        rows,
        caption="Clean accuracy: last epoch of metrics.jsonl, and the checkpoint evaluated by this report",
    )
    robust_rows, hints = [], []
    for r in runs:
        result = r.attack_result()
        if result:
            attack = result.get("attack", {})
            name = attack.get("repr", "?") if isinstance(attack, dict) else str(attack)
            robust_rows.append([
                r.label, name, _num(result.get("n", "—")), _num(_pct(result.get("clean_top1"))),
                _num(_pct(result.get("robust_top1"))), _num(_pct(result.get("robust_top5"))),
            ])  # fmt: skip
        monitored = [e for e in r.epochs if "val_robust_top1" in e]
        if monitored:
            n = r.config.get("robust_val", "?")
            robust_rows.append([
                r.label, f"PGD-10 during training (epoch {monitored[-1]['epoch'] + 1}, first {n} images)", _num(n),
                _num("—"), _num(_pct(monitored[-1]["val_robust_top1"])), _num("—"),
            ])  # fmt: skip
        if not result:
            hints.append(f"for {esc(r.label)}, run {_command('visionlab', 'attack', *r.model_arguments())}")
    robust = (
        table(
            ["run", "attack", "images", "clean top-1 %", "robust top-1 %", "robust top-5 %"],
            robust_rows,
            caption="Robust accuracy (the attack run on every image)",
        )
        if robust_rows
        else Raw("")
    )
    if hints:
        robust += missing(Raw("robust accuracy under attack: " + "; ".join(hints) + "."))
    return Raw(clean + robust)


def _curves(runs: Sequence[Run]) -> Raw:
    trained = [r for r in runs if r.epochs]
    parts = [
        missing(
            Raw(
                f"{esc(r.label)} has no finished epoch in {code(str(r.path / 'metrics.jsonl'))}: train it "
                f"({_command('visionlab', 'train', '--out', r.path)})."
            )
        )
        for r in runs
        if not r.epochs
    ]
    if trained:
        names = ", ".join(r.label for r in trained)
        png = figure_png(curves_figure([r.path for r in trained], [r.label for r in trained]))
        alt = f"Training curves of {names}: loss, top-1 and top-5 accuracy, and learning rate against epoch"
        caption = (
            "Loss, accuracy and learning rate against epoch"
            + (", one colour per run" if len(trained) > 1 else "")
            + ". Dashed: training; solid: validation; dotted: validation top-5; dash-dot: validation PGD top-1."
        )
        parts.append(figure(png, alt, caption))
        for r in trained:
            parts.append(_epoch_table(r))
    return Raw("".join(parts))


def _epoch_table(run: Run) -> Raw:
    robust = any("val_robust_top1" in e for e in run.epochs)
    columns = ["epoch", "lr", "train loss", "train top-1 %", "val loss", "val top-1 %", "val top-5 %"]
    columns += ["val PGD top-1 %"] if robust else []
    columns += ["seconds"]
    rows = []
    for e in run.epochs:
        row = [
            _num(e["epoch"] + 1), _num(f"{e.get('lr', 0):.3g}"), _num(f"{e.get('train_loss', 0):.4f}"),
            _num(_pct(e.get("train_top1"))), _num(f"{e.get('val_loss', 0):.4f}"), _num(_pct(e.get("val_top1"))),
            _num(_pct(e.get("val_top5"))),
        ]  # fmt: skip
        row += [_num(_pct(e.get("val_robust_top1")))] if robust else []
        row += [_num(f"{e['seconds']:.1f}" if "seconds" in e else "—")]
        rows.append(row)
    body = table(columns, rows, caption=f"Per-epoch numbers of {run.label} (metrics.jsonl)")
    return Raw(f"<details open><summary>Per-epoch numbers of {esc(run.label)}</summary>{body}</details>")


def _per_class(run: Run, found: ModelAnalysis | Raw) -> str:
    if not isinstance(found, ModelAnalysis):
        return found
    rows = []
    for name, (n, correct, accuracy) in zip(found.class_names, per_class_accuracy(found.confusion), strict=True):
        share = 0.0 if accuracy is None else accuracy / 100
        bar = Raw(f'<span class="bar" aria-hidden="true" style="--w: {share:.3f}"></span>{esc(_pct(accuracy))}')
        rows.append([name, _num(n), _num(correct), Cell(bar, cls="num acc")])
    caption = f"Per-class top-1 of {found.checkpoint.name} on the first {found.n} validation images"
    return table(["class", "images", "correct", "accuracy %"], rows, caption=caption)


def _confusion(run: Run, found: ModelAnalysis | Raw) -> str:
    if not isinstance(found, ModelAnalysis):
        return found
    names, counts = found.class_names, found.confusion
    caption = (
        f"Confusion matrix of {found.checkpoint.name} on {found.n} validation images (rows true, columns predicted)"
    )
    if len(names) <= MAX_TABLE_CLASSES:
        rows = []
        for t, name in enumerate(names):
            total = sum(counts[t]) or 1
            cells: list[object] = [name]
            for p, count in enumerate(counts[t]):
                share = count / total
                style = f"background: rgba(11, 92, 173, {0.85 * share:.3f})" + ("; color: #fff" if share > 0.5 else "")
                cells.append(Cell(count, cls="diag" if p == t else "", style=style if count else ""))
            rows.append(cells)
        return table([Raw("true \\ predicted"), *names], rows, caption=caption, cls="confusion")
    return _confusion_heatmap(found, caption)


def _confusion_heatmap(found: ModelAnalysis, caption: str) -> Raw:
    """Many classes: the matrix as an image (rows normalised) and the largest confusions as a table."""
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(found.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    alt = f"Confusion matrix heat map of {len(found.class_names)} classes, each row the shares of its true class"
    pairs = sorted(
        ((int(counts[t, p]), t, p) for t in range(len(counts)) for p in range(len(counts)) if t != p and counts[t, p]),
        reverse=True,
    )[:20]
    names = found.class_names
    rows = [[names[t], names[p], _num(c), _num(_pct(100 * shares[t, p]))] for c, t, p in pairs]
    confusions = table(["true class", "predicted as", "images", "% of the true class"], rows,
                       caption="The 20 most frequent confusions")  # fmt: skip
    return Raw(figure(figure_png(fig), alt, caption) + confusions)


def _predictions(run: Run, found: ModelAnalysis | Raw) -> str:
    if not isinstance(found, ModelAnalysis):
        return found
    names, items = found.class_names, []
    for s in found.samples:
        verdict = "✓ correct" if s.correct else "✗ misclassified"
        predicted = names[s.top[0][0]]
        alt = f"Validation image {s.index + 1}: a {names[s.label]}, predicted {predicted} ({verdict[2:]})"
        top = "".join(f"<li>{esc(names[c])} <span class='p'>{100 * p:.1f}%</span></li>" for c, p in s.top)
        items.append(
            f'<li class="{"right" if s.correct else "wrong"}">{img(s.png, alt)}'
            f'<div class="verdict">{esc(verdict)}</div><div>#{s.index + 1}, true: <strong>{esc(names[s.label])}'
            f'</strong></div><ol aria-label="top-5 predictions">{top}</ol></li>'
        )
    wrong = sum(not s.correct for s in found.samples)
    summary = (
        f'<p class="note">The first {len(found.samples)} validation images, {wrong} misclassified (red frame, ✗), '
        f"with the top-5 classes of {esc(found.checkpoint.name)} and their probabilities.</p>"
    )
    return Raw(summary + f'<ul class="samples">{"".join(items)}</ul>')


def _saliency(run: Run, analyses: Analyses) -> str:
    source = f"written by {code('visionlab saliency')} in {code(str(run.path / 'saliency'))}"
    files = _file_figures(run, "saliency", source, [
        ("images.png", "The validation images the saliency maps explain, 10 per row", "Images"),
        ("saliency.png", "Saliency red overlays: red marks pixels above twice the image's mean saliency",
         "Red overlay (the course's rendering)"),
        ("saliency_heatmap.png", "Saliency heat maps blended over the images (bright: large gradient)", "Heat map"),
    ])  # fmt: skip
    if run.file("saliency", "saliency.png") is not None:
        return Raw("".join(f for f in files if f is not None))
    found = _analysis(run, analyses, "saliency maps")
    command = _command("visionlab", "saliency", *run.model_arguments())
    if not isinstance(found, ModelAnalysis):
        return found
    if not (found.saliency_png and found.saliency_heatmap_png):
        return missing(Raw(f"saliency grids: run {command}."))
    n = len(found.samples)
    note = Raw(
        f'<p class="note">Computed by the report: the input gradient of the predicted class (Simonyan et al. 2014) '
        f"for the first {n} validation images, 10 per row. {command} writes these grids with more options "
        "(SmoothGrad, the true class) and the report then shows those.</p>"
    )
    return Raw(
        note
        + figure(found.saliency_png, f"Saliency red overlays of the first {n} validation images",
                 "Red overlay: pixels above twice the image's mean saliency", cls="grid")
        + figure(found.saliency_heatmap_png, f"Saliency heat maps of the first {n} validation images",
                 "Heat map (bright: large gradient)", cls="grid")
    )  # fmt: skip


def _explanations(run: Run) -> str:
    """The side-by-side figure of ``visionlab explain`` and its methods table (``explain/explain.json``)."""
    result = run.explain_result()
    png = _png_file(run.file("explain", "explain.png"))
    if result is None or png is None:
        command = _command("visionlab", "explain", *run.model_arguments())
        return missing(Raw(f"the explanation methods side by side: run {command}."))
    methods = [m for m in result.get("methods", []) if isinstance(m, dict)]
    rows = []
    for m in methods:
        options = m.get("options", {}) if isinstance(m.get("options"), dict) else {}
        shown = ", ".join(f"{k} {v}" for k, v in options.items() if v is not None and k not in ("batch_size", "layer"))
        gap = m.get("completeness_gap") if isinstance(m.get("completeness_gap"), dict) else {}
        rows.append([
            str(m.get("name", "?")), shown or "—", options.get("layer") or "—",
            _num(f"{gap['mean_abs']:.3g} / {gap['max_abs']:.3g}" if {"mean_abs", "max_abs"} <= set(gap) else "—"),
        ])  # fmt: skip
    n, columns = result.get("n", "?"), ", ".join(str(c) for c in result.get("columns", []))
    source = f"{code('visionlab explain')} in {code(str(run.path / 'explain'))}"
    numbers = table(
        ["method", "options", "Grad-CAM layer", "IG completeness gap |Σ IG − Δf|, mean / max"],
        rows,
        caption=Raw(f"The methods of the figure (explain/explain.json), each explaining the predicted class of "
                    f"the first {esc(str(n))} validation images"),
    )  # fmt: skip
    alt = f"The first {n} validation images, one per row, then each method's heat map over it: {columns}"
    caption = Raw(f"Rows: images; columns: {esc(columns)} (bright: important) ({source}).")
    return Raw(numbers + figure(png, alt, caption, cls="grid") + _explanation_checks(run, result))


def _explanation_checks(run: Run, result: dict[str, Any]) -> str:
    """The sanity table and figures and the deletion/insertion table and curves of ``visionlab explain --sanity
    --faithfulness`` (explain.json and the PNG files beside it), or which flags produce the ones not run."""
    sanity, faith = (result.get(k) if isinstance(result.get(k), dict) else None for k in ("sanity", "faithfulness"))
    parts = []
    if sanity:
        parts.append(_sanity_table(sanity))
        data = result.get("data_randomization")
        if isinstance(data, dict):
            parts.append(_data_randomization_table(data))
        parts += _explain_figures(run, [
            ("cascade.png", "Each method's map of one image (rows) from the trained model and after each step of the "
             "cascade, left to right", "The cascade (Adebayo et al. 2018, Fig. 2): the example image, its map from "
             "the trained model, then after each step (titled by the layer randomized last, top first)"),
            ("similarity.png", "Mean Spearman rank correlation and SSIM with the trained model's maps after each step "
             "of the cascade, one line per method", "Similarity to the trained model's maps after each step (shaded: "
             "±1 sd over images; dashed: the pass line)"),
        ])  # fmt: skip
    if faith:
        parts.append(_faithfulness_table(faith))
        parts += _explain_figures(run, [
            ("faithfulness.png", "Mean probability of the target class as pixels are deleted and inserted in each "
             "ordering", "Deletion and insertion curves (Petsiuk et al. 2018): the mean over images, each "
             "ordering's mean AUC in the legend"),
        ])  # fmt: skip
    absent = [flag for flag, found in (("--sanity", sanity), ("--faithfulness", faith)) if not found]
    if absent:
        names = {"--sanity": "the sanity check", "--faithfulness": "the deletion and insertion curves"}
        what = " and ".join(names[flag] for flag in absent)
        command = _command("visionlab", "explain", *run.model_arguments(), *absent)
        parts.append(missing(Raw(f"{esc(what)} of these methods (not run): run {command}.")))
    return "".join(parts)


def _sanity_table(sanity: dict[str, Any]) -> Raw:
    """One row per method of the cascading randomization (the model-free baselines marked)."""
    methods = sanity.get("methods") if isinstance(sanity.get("methods"), dict) else {}
    line = next((m.get("threshold") for m in methods.values() if isinstance(m, dict)), None)
    rows = []
    for row in (r for r in sanity.get("table", []) if isinstance(r, dict)):
        falls = row.get("falls_at")
        rows.append([
            _baseline_label(row.get("method")), "✓ passes" if row.get("passed") else "✗ fails",
            "—" if falls is None else falls or "(model)", *(_num(_fixed(row.get(k))) for k in
                                                           ("repeat_spearman", "final_spearman", "final_ssim")),
        ])  # fmt: skip
    caption = Raw(
        f"Sanity check (explain/explain.json): cascading parameter randomization (Adebayo et al. 2018) on "
        f"{esc(sanity.get('num_images', '?'))} images, by {esc(sanity.get('granularity') or 'layer')} "
        f"({len(sanity.get('steps', []))} steps, the top first). A method passes when, once the model is random, "
        f"its maps' mean Spearman correlation with the trained model's is below {esc(line)} and it agrees with itself "
        "(repeat); it falls at the step from which it stays below. The edge detector and the random map ignore the "
        "model: they must fail."
    )
    return table(["method", "sanity", "falls at", "repeat Spearman", "final Spearman", "final SSIM"], rows,
                 caption=caption)  # fmt: skip


def _data_randomization_table(data: dict[str, Any]) -> Raw:
    """One row per method of ``explain --sanity --random-labels``: its maps against a shuffled-label model's."""
    methods = data.get("methods") if isinstance(data.get("methods"), dict) else {}
    line = next((m.get("threshold") for m in methods.values() if isinstance(m, dict)), None)
    rows = [
        [_baseline_label(row.get("method")), "✓ passes" if row.get("passed") else "✗ fails",
         *(_num(_fixed(row.get(k))) for k in ("repeat_spearman", "final_spearman", "final_ssim"))]
        for row in data.get("table", []) if isinstance(row, dict)
    ]  # fmt: skip
    caption = Raw(
        f"Data randomization (explain/explain.json, Adebayo et al. 2018 Sec. 3.2) on "
        f"{esc(data.get('num_images', '?'))} images: each method's maps against those of "
        f"{code(str(data.get('random_model', '?')))}, the same architecture trained on shuffled labels "
        f"({code('visionlab train --shuffle-labels')}). A method passes when the mean Spearman correlation is below "
        f"{esc(line)} and it agrees with itself (repeat)."
    )
    return table(["method", "data randomization", "repeat Spearman", "Spearman", "SSIM"], rows, caption=caption)


def _faithfulness_table(faith: dict[str, Any]) -> Raw:
    """One row per ordering: the mean deletion and insertion AUCs, ± their sd over images."""
    curves = faith.get("curves") if isinstance(faith.get("curves"), dict) else {}
    rows = []
    for row in (r for r in faith.get("table", []) if isinstance(r, dict)):
        kinds = curves.get(row.get("method"), {})
        cells = []
        for kind in ("deletion", "insertion"):
            sd = kinds.get(kind, {}).get("auc_sd") if isinstance(kinds, dict) else None
            cells.append(_num(_fixed(row.get(f"{kind}_auc")) + ("" if sd is None else f" ± {_fixed(sd)}")))
        rows.append([_baseline_label(row.get("method")), *cells])
    caption = Raw(
        f"Faithfulness (explain/explain.json): deletion and insertion (Petsiuk et al. 2018) on "
        f"{esc(faith.get('num_images', '?'))} images in {esc(faith.get('steps', '?'))} steps: the area under the "
        "target class's probability as the pixels are blacked out (deletion: lower is better) or put back onto a "
        "blurred copy (insertion: higher is better) in the order of each map, mean ± sd over images. A map worth "
        "drawing beats the random and edge orderings."
    )
    return table(["ordering", "deletion AUC ↓", "insertion AUC ↑"], rows, caption=caption)


def _baseline_label(name: object) -> str:
    return f"{name} (baseline)" if name in ("edge", "random") else str(name)


def _fixed(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def _explain_figures(run: Run, specs: Sequence[tuple[str, str, str]]) -> list[Raw]:
    """A figure per ``(file in explain/, alt text, caption)`` whose PNG file is there."""
    found = [(_png_file(run.file("explain", name)), alt, caption) for name, alt, caption in specs]
    return [figure(png, alt, Raw(f"{esc(caption)}.")) for png, alt, caption in found if png is not None]


def _adversarial(run: Run) -> str:
    source = f"{code('visionlab attack -v')} in {code(str(run.path / 'attack'))}"
    figures = _file_figures(run, "attack", source, [
        ("original.png", "The clean validation images that were attacked, 10 per row", "Original images"),
        ("adversarial.png", "The same images after the attack (perturbation within the threat model)",
         "Adversarial images"),
        ("difference.png", "Amplified difference between adversarial and original images, grey where unchanged",
         "Difference, amplified (grey: unchanged)"),
    ])  # fmt: skip
    if any(f is None for f in figures):
        return missing(
            Raw(
                "original / adversarial / difference grids: run "
                f"{_command('visionlab', 'attack', *run.model_arguments(), '-v')} "
                "(add e.g. --eps 0.1 --steps 20 for the threat model)."
            )
        )
    result = run.attack_result()
    numbers = ""
    if result:
        attack = result.get("attack", {})
        name = attack.get("repr", "?") if isinstance(attack, dict) else str(attack)
        numbers = table(
            ["attack", "images", "clean top-1 %", "robust top-1 %"],
            [[name, _num(result.get("n", "—")), _num(_pct(result.get("clean_top1"))),
              _num(_pct(result.get("robust_top1")))]],
            caption="The attack these images come from (attack/attack.json)",
        )  # fmt: skip
    return Raw(numbers + '<div class="grids">' + "".join(figures) + "</div>")


def _robustness(run: Run) -> str:
    from visionlab.robustness import plot_accuracy_vs_eps, plot_accuracy_vs_steps

    rows = run.sweep_rows()
    if not rows:
        return missing(
            Raw(
                "accuracy against ε and against PGD steps: run "
                f"{_command('visionlab', 'robustness', *run.model_arguments())}."
            )
        )
    parts = []
    with tempfile.TemporaryDirectory(prefix="visionlab-report-") as tmp:
        for kind, plot, what in (("eps", plot_accuracy_vs_eps, "ε"), ("steps", plot_accuracy_vs_steps, "PGD steps")):
            if any(r["sweep"] == kind for r in rows):
                png = plot(rows, Path(tmp) / f"{kind}.png").read_bytes()
                models = ", ".join(sorted({str(r["model"]) for r in rows}))
                alt = f"Clean and robust top-1 accuracy against {what} for {models}"
                parts.append(figure(png, alt, f"Top-1 accuracy against {what} (solid: under PGD, dashed: clean)."))
    table_rows = [
        [str(r["model"]), r["sweep"], r["norm"], _num(f"{r['eps']:g}"), _num(r["steps"]), _num(r["n"]),
         _num(_pct(r["clean_top1"])), _num(_pct(r["robust_top1"]))]
        for r in rows
    ]  # fmt: skip
    parts.append(
        table(
            ["model", "sweep", "norm", "ε", "steps", "images", "clean top-1 %", "robust top-1 %"],
            table_rows,
            caption=f"visionlab robustness ({run.path / 'robustness' / 'sweep.json'})",
        )
    )
    return Raw('<div class="pair">' + "".join(parts[:-1]) + "</div>" + parts[-1])


def _corruptions(run: Run) -> str:
    result = run.corruption_result()
    if not result:
        return missing(
            Raw(
                "accuracy under the 15 common corruptions of ImageNet-C: run "
                f"{_command('visionlab', 'corruptions', *run.model_arguments())} (add --baseline CKPT for the "
                "corruption error, mCE)."
            )
        )
    ce = result.get("ce") if "baseline" in result else None
    columns = ["corruption", *(f"severity {s}" for s in result["severities"]), "mean"] + (["CE %"] if ce else [])
    rows = []
    for c in result["corruptions"]:
        top1 = result["top1"][c]
        rows.append([c.replace("_", " "), *(_num(_pct(a)) for a in top1), _num(_pct(sum(top1) / len(top1)))]
                    + ([_num(_pct(ce.get(c)))] if ce else []))  # fmt: skip
    summary = (
        f"{result['n']} images, seed {result['seed']}: clean top-1 {_pct(result['clean_top1'])} %, mean under "
        f"corruption {_pct(result['mean_corruption_top1'])} %"
    )
    if ce:
        base = result["baseline"].get("model", "?") if isinstance(result["baseline"], dict) else "?"
        mce, relative = _pct(result.get("mce")), _pct(result.get("relative_mce"))
        summary += f"; mCE {mce} %, relative mCE {relative} % ({base} = 100)"
    source = f"visionlab corruptions ({run.path / 'corruptions' / 'corruptions.json'})"
    figure_ = _file_figure(
        run, ("corruptions", "corruptions.png"), f"Top-1 accuracy of {result['model']} per corruption and severity",
        "Top-1 accuracy (%) per corruption (rows) and severity (columns)",
    )  # fmt: skip
    return Raw(f"<p>{esc(summary)}.</p>" + (figure_ or "") + table(columns, rows, caption=source))


def _certified(run: Run) -> str:
    from visionlab.robustness import Certification, plot_certified_accuracy

    result = run.certification()
    if result is None:
        return missing(
            Raw(
                "certified accuracy against L2 radius by randomized smoothing: run "
                f"{_command('visionlab', 'certify', *run.model_arguments(), '--sigma', '0.25')} (σ as the model "
                f"was trained with, {code('visionlab train --noise-sigma 0.25')})."
            )
        )
    settings = f"σ = {result['sigma']:g}, n0 = {result['n0']}, n = {result['n']}, α = {result['alpha']:g}"
    with tempfile.TemporaryDirectory(prefix="visionlab-report-") as tmp:
        label = str(result.get("model", run.label))
        png = plot_certified_accuracy({label: Certification.from_dict(result)}, Path(tmp) / "certified.png")
        caption = f"Certified top-1 accuracy against L2 radius (pixel units) of the smoothed model, {settings}."
        drawn = figure(png.read_bytes(), f"Certified accuracy against L2 radius for {label}", caption)
    rows = [[_num(f"{r['radius']:g}"), _num(_pct(r["accuracy"]))] for r in result["certified_accuracy"]]
    caption = (f"visionlab certify ({run.path / 'certify' / 'certify.json'}): {result['images']} images, "
               f"{result['abstained']} abstained, {settings}")  # fmt: skip
    return Raw(drawn + table(["L2 radius", "certified top-1 %"], rows, caption=caption))


def conv_pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Pairs ``(native, custom)`` of runs whose configurations differ in ``conv`` and otherwise only in
    :data:`CONV_IGNORED`."""
    pairs = []
    for a, b in combinations(runs, 2):
        if {a.config.get("conv"), b.config.get("conv")} == {"native", "custom"} and not _differences(a, b):
            pairs.append((a, b) if a.config["conv"] == "native" else (b, a))
    return pairs


def _best_epoch(run: Run) -> dict[str, Any]:
    """The epoch record of ``run``'s best validation top-1; ``{}`` when no epoch has one (none finished, or
    records of a run that was not validated)."""
    scored = [e for e in run.epochs if e.get("val_top1") is not None]
    return max(scored, key=lambda e: e["val_top1"]) if scored else {}


def _differences(a: Run, b: Run) -> list[str]:
    keys = (set(a.config) | set(b.config)) - CONV_IGNORED - {"conv"}
    return sorted(k for k in keys if a.config.get(k) != b.config.get(k))


def _conv(runs: Sequence[Run], analyses: Analyses) -> Raw:
    """The pairs among ``runs``, then each run's pair in its ``conv/`` folder; or why there is none."""
    parts = [_conv_pair(native, custom, analyses) for native, custom in conv_pairs(runs)]
    for run in runs:
        for native, custom in conv_pairs(run.conv):
            parts.append(_conv_note(run, native, custom) + _conv_pair(native, custom, analyses))
    return Raw("".join(parts)) if parts else _conv_missing(runs)


def _conv_missing(runs: Sequence[Run]) -> Raw:
    why = ""
    if len(runs) >= 2:
        a, b = runs[0], runs[1]
        differ = _differences(a, b)
        why = (
            f" {esc(a.label)} and {esc(b.label)} differ in {esc(', '.join(differ))}, not only in conv."
            if differ
            else f" {esc(a.label)} and {esc(b.label)} use the same conv ({esc(a.config.get('conv', '?'))})."
        )
    inside = runs[0].path / "conv"
    return missing(
        Raw(
            "give two runs that differ only in the convolution:"
            + why
            + " For example "
            + _command("visionlab", "train", "--out", "runs/native")
            + " and "
            + _command("visionlab", "train", "--use-custom-conv", "--out", "runs/custom")
            + " with the same other flags, then "
            + _command("visionlab", "report", "runs/native", "runs/custom")
            + "; or train the two into "
            + code(str(inside))
            + " ("
            + _command("--out", inside / "native")
            + ", "
            + _command("--out", inside / "custom")
            + "), which "
            + _command("visionlab", "report", runs[0].path)
            + " shows."
        )
    )


def _conv_note(run: Run, native: Run, custom: Run) -> Raw:
    """What the pair in ``run``'s ``conv/`` folder is: not ``run`` itself, and how it differs from it."""
    settings = ", ".join(
        f"{k} {_setting(native.config.get(k))} (not {_setting(run.config.get(k))})" for k in _differences(run, native)
    )
    return Raw(
        f'<p class="note">A training run of its own, trained twice with the same flags and seed: with PyTorch\'s '
        f"convolution in {code(str(native.path))} and with the unfold/fold convolution in {code(str(custom.path))}. "
        + (f"It differs from the training of {esc(run.label)} in {esc(settings)}. " if settings else "")
        + "Compare its two columns with each other.</p>"
    )


def _conv_size(run: Run) -> str:
    """What ``run`` trained, and on how many images: the size of a conv comparison."""
    c = run.config
    train = f"the first {c['limit_train']}" if c.get("limit_train") else "all"
    val = f"the first {c['limit_val']}" if c.get("limit_val") else "all"
    return (
        f"{c.get('model', '?')} on {c.get('data', '?')}, {c.get('epochs', '?')} epochs of {train} training images "
        f"(batch {c.get('batch_size', '?')}, seed {c.get('seed', '?')}), validated on {val} validation images"
    )


def _conv_pair(native: Run, custom: Run, analyses: Analyses) -> Raw:
    """The table of ``native`` against ``custom``, and their training curves overlaid."""
    columns = ["", f"{native.label} (native conv)", f"{custom.label} (custom conv)"]
    rows = [
        ["epochs", *(_num(len(r.epochs)) for r in (native, custom))],
        ["val top-1 % (last epoch)", *(_num(_pct(_last(r, "val_top1"))) for r in (native, custom))],
        ["val top-5 % (last epoch)", *(_num(_pct(_last(r, "val_top5"))) for r in (native, custom))],
        ["best val top-1 %", *(_num(_pct(_best_epoch(r).get("val_top1"))) for r in (native, custom))],
        ["mean seconds per epoch", *(_num(_mean_text(r, "epoch", "seconds", ".1f")) for r in (native, custom))],
        ["mean training images/s", *(_num(_mean_text(r, "step", "images_per_s", ".0f")) for r in (native, custom))],
    ]
    seconds = [_mean(r, "epoch", "seconds") for r in (native, custom)]
    if all(seconds):
        rows.append(["seconds per epoch, custom / native", _num("1"), _num(f"{seconds[1] / seconds[0]:.2f}")])
    evaluated = [analyses.get(r.path) for r in (native, custom)]
    if all(isinstance(a, ModelAnalysis) for a in evaluated):
        rows.append(["top-1 % (report)", *(_num(_pct(a.top1)) for a in evaluated)])
    caption = f"The same training run with either convolution: {_conv_size(native)}"
    parts = [table(columns, rows, caption=caption)]
    if native.epochs and custom.epochs:
        labels = [f"{native.label} (native conv)", f"{custom.label} (custom conv)"]
        png = figure_png(curves_figure([native.path, custom.path], labels))
        alt = f"Training curves of {labels[0]} and {labels[1]} overlaid: loss, accuracy and learning rate"
        parts.append(figure(png, alt, "Blue: native convolution; orange: custom (unfold/fold) convolution."))
    return Raw("".join(parts))


def _last(run: Run, key: str) -> float | None:
    return run.epochs[-1].get(key) if run.epochs else None


def _mean(run: Run, kind: str, key: str) -> float | None:
    """Mean of ``key`` over the run's records of type ``kind`` (None without any)."""
    values = [r[key] for r in run.records if r.get("type") == kind and isinstance(r.get(key), int | float)]
    return sum(values) / len(values) if values else None


def _mean_text(run: Run, kind: str, key: str, spec: str) -> str:
    value = _mean(run, kind, key)
    return "—" if value is None else format(value, spec)
