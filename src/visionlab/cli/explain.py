"""``visionlab explain``: several explanation methods side by side on the same validation images.

The model is read as every analysis command reads it (:mod:`visionlab.cli.model_flags`: ``--resume CKPT``, or
``--model-arch``/``--model-factory`` with ``--data``); the first ``--num`` validation images are explained for the
model's own prediction by each ``--method`` (:data:`visionlab.explain.METHODS`, default all four). Written to
``explain/`` next to the model (or ``--out``):

* ``explain.png``: one row per image, columns the image then each method's heat map over it, in ``--method`` order;
* ``explain.json``: the images (indices, labels, predictions), each method with its options (defaults filled in),
  the Grad-CAM layer used and the Integrated Gradients completeness gaps — what ``visionlab report`` shows.

Whether the maps mean anything, on ``--subset`` images (default 100) drawn from the split with ``--seed``, the
same for every method, apart from the ``--num`` images of the figure:

* ``--sanity``: Adebayo et al. 2018's cascading parameter randomization
  (:func:`visionlab.explain.cascading_randomization`) of every method and of the two maps that ignore the model
  (an edge detector, a random map): does each method's map change once the model is random, and from which layer
  (``--sanity-granularity layer|block``) on? ``explain.json["sanity"]``, ``cascade.png`` (the paper's Fig. 2) and
  ``similarity.png`` (mean Spearman and SSIM after each step);
* ``--faithfulness``: Petsiuk et al. 2018's deletion and insertion curves (:func:`visionlab.explain.compare_orderings`)
  of every method beside a random and an edge ordering, in ``--curve-steps`` steps: ``explain.json["faithfulness"]``
  and ``faithfulness.png``.

Why 100 images by default: the pass rule reads a mean Spearman over images whose spread is about 0.1-0.2 from
image to image, so 100 images put its standard error near 0.01-0.02, far from the 0.5 line; and the check
recomputes every map once per cascade step (SimpleNet: 8 steps + 2, each about 100 gradient passes per image with
the default SmoothGrad and IG), which 100 images keep to about a minute on a 2-core CPU. The acceptance tables
use 500 (``--subset 500``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionlab.cli.common import FIELD_FLAGS, CLIError, check_options, format_user_error
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_model, model_file, model_label
from visionlab.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the command, not by `visionlab --help`
    import torch

__all__ = ["EXPLAIN_FLAGS", "add_explain_command", "cmd_explain", "explain_options"]

METHOD_NAMES = ("saliency", "smoothgrad", "ig", "gradcam")  # visionlab.explain.METHODS, without importing torch

# The library's option names (visionlab.explain.DEFAULTS) -> this command's flags, for its one-line errors.
EXPLAIN_FLAGS = {
    "method": "--method", "layer": "--layer", "steps": "--ig-steps", "baseline": "--baseline",
    "samples": "--smoothgrad-samples", "smoothgrad_samples": "--smoothgrad-samples", "noise_std": "--noise-std",
    "seed": "--seed", "num": "--num", "batch_size": "-b/--batch-size", "subset": "--subset",
    "curve_steps": "--curve-steps", "granularity": "--sanity-granularity",
}  # fmt: skip
# The check flags (argparse dest -> (what reads it, flag, default)); one given without its check is refused.
_CHECK_FLAGS = {
    "subset": (("sanity", "faithfulness"), "--subset", 100),
    "curve_steps": (("faithfulness",), "--curve-steps", 50),
    "sanity_granularity": (("sanity",), "--sanity-granularity", "layer"),
    "random_labels": (("sanity",), "--random-labels", None),
}
# The figures of the checks, by the check that draws them.
_CHECK_FIGURES = {"sanity": ("cascade.png", "similarity.png"), "faithfulness": ("faithfulness.png",)}
# The flags each method reads (argparse dests); one given for none of the chosen methods is refused.
_READ_BY = {
    "layer": ("gradcam", "--layer"), "ig_steps": ("ig", "--ig-steps"), "baseline": ("ig", "--baseline"),
    "smoothgrad_samples": ("smoothgrad", "--smoothgrad-samples"), "noise_std": ("smoothgrad", "--noise-std"),
}  # fmt: skip


def add_explain_command(sub: argparse._SubParsersAction) -> None:
    """Register ``explain`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("explain", help="explanation methods side by side (saliency, SmoothGrad, IG, Grad-CAM)")
    p.add_argument("--resume", metavar="CKPT", help="checkpoint to load (best or last); or a model of the group below")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    p.add_argument("-b", "--batch-size", type=int, default=250,
                   help="images per forward/backward pass, interpolated images for IG (default 250)")  # fmt: skip
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="DIR", help="where the figure and explain.json go (default: next to the model)")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--num", type=int, default=10, help="images, the first of the split (default 10)")
    p.add_argument("--method", nargs="+", metavar="NAME",
                   help=f"one or more of {', '.join(METHOD_NAMES)} (default: all, in that order)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the SmoothGrad noise and, with --sanity/--faithfulness, of their image subset, "
                        "re-initialisations and random map (default 0)")  # fmt: skip
    g = p.add_argument_group("method options (each only with its method)")
    g.add_argument("--layer", metavar="NAME",
                   help="gradcam: the module (a name from model.named_modules()) whose feature map is used (default: "
                        "the last convolutional feature map; a wrong name lists the usable ones)")  # fmt: skip
    g.add_argument("--ig-steps", type=int, help="ig: Gauss-Legendre nodes of the path integral, >= 1 (default 50)")
    g.add_argument(
        "--baseline", metavar="KIND", help="ig: black (default, all zeros) | blur (Gaussian, sigma = side/10)"
    )
    g.add_argument("--smoothgrad-samples", type=int, help="smoothgrad: noisy copies averaged, >= 1 (default 50)")
    g.add_argument("--noise-std", type=float, help="smoothgrad: noise std in pixel units (default 0.1)")
    c = p.add_argument_group("checks of the maps, on a seeded subset of the split (apart from --num)")
    c.add_argument("--sanity", action="store_true",
                   help="cascading parameter randomization (Adebayo et al. 2018) of each method and of an edge "
                        "detector and a random map: does the map change once the model is random?")  # fmt: skip
    c.add_argument("--faithfulness", action="store_true",
                   help="deletion and insertion curves (Petsiuk et al. 2018) of each method beside a random and an "
                        "edge ordering: does the map put first the pixels the prediction rests on?")  # fmt: skip
    c.add_argument("--subset", type=int, metavar="N",
                   help="images of the checks, drawn from the split with --seed (default 100: a mean Spearman "
                        "within ~0.02, about a minute for SimpleNet on 2 CPU cores)")  # fmt: skip
    c.add_argument(
        "--curve-steps",
        type=int,
        metavar="N",
        help="faithfulness: the pixels are deleted / inserted in N equal fractions, >= 1 (default 50)",
    )
    c.add_argument("--sanity-granularity", metavar="KIND",
                   help="sanity: what one step randomizes: layer (default, every conv, norm and linear layer) | "
                        "block (a residual or transformer block, or a conv with its norm: ResNet-18 in 10 steps "
                        "instead of 41)")  # fmt: skip
    c.add_argument(
        "--random-labels",
        metavar="CKPT",
        help="sanity: also the data randomization test (Adebayo et al. 2018 Sec. 3.2): each map against "
        "the one of CKPT, the same architecture trained on shuffled labels (train --shuffle-labels)",
    )
    p.add_argument("--json", action="store_true", help="print explain.json as one line instead of the table")
    add_model_arguments(p)
    p.set_defaults(func=cmd_explain)


def explain_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The chosen methods and their options (``{name: options}``, in ``--method`` order), checked by
    :func:`visionlab.explain.explainer` before any model is read; a flag no chosen method reads is refused."""
    from visionlab.explain import explainer

    methods = args.method or list(METHOD_NAMES)
    for name in methods:
        if name not in METHOD_NAMES:
            raise CLIError(f"--method: unknown method {name!r}; methods: {', '.join(METHOD_NAMES)}")
    if len(set(methods)) != len(methods):
        raise CLIError(f"--method: each method once, got {' '.join(methods)}")
    for dest, (method, flag) in _READ_BY.items():
        if getattr(args, dest) is not None and method not in methods:
            raise CLIError(f"{flag}: only with --method {method} (no chosen method reads it)")
    given = {
        "gradcam": {"layer": args.layer},
        "ig": {"steps": args.ig_steps, "baseline": args.baseline},
        "smoothgrad": {"samples": args.smoothgrad_samples, "noise_std": args.noise_std, "seed": args.seed},
    }
    options = {}
    for name in methods:
        chosen = {k: v for k, v in given.get(name, {}).items() if v is not None}
        options[name] = explainer(name, batch_size=args.batch_size, **chosen).options
    return options


def cmd_explain(args: argparse.Namespace) -> int:
    """The maps of each method for the first ``--num`` validation images: a figure and explain.json."""
    try:
        return _run(args)
    except ConfigError as exc:  # a library error about an option: named by this command's flag
        raise CLIError(format_user_error(exc, {**FIELD_FLAGS, **EXPLAIN_FLAGS})) from exc


def _run(args: argparse.Namespace) -> int:
    import torch

    from visionlab.checks import check_integer

    check_integer(args.num, "num", minimum=1)
    check_integer(args.seed, "seed", minimum=0)
    options = explain_options(args)
    checks = _check_settings(args)
    check_options(args, "batch_size")
    check_model_flags(args)
    _, model, bundle, device = load_model(args, args.resume)
    if checks.get("random_labels") is not None:
        checks["random_model"] = _random_labels_model(checks["random_labels"], model, bundle, device)
    n = min(args.num, len(bundle.val))
    images = torch.stack([bundle.val[i][0] for i in range(n)]).to(device)
    labels = [int(bundle.val[i][1]) for i in range(n)]
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    maps, methods = [], []
    for name, opts in options.items():
        found, record = _explain(model, images, predicted, name, opts)
        maps.append(found.cpu())
        methods.append(record)
    out = Path(args.out) if args.out else Path(model_file(args, args.resume)).parent / "explain"
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "model": model_label(args, args.resume), "n": n, "indices": list(range(n)), "labels": labels,
        "predicted": predicted.tolist(), "target": "predicted", "columns": ["image", *options], "methods": methods,
        "figure": "explain.png",
    }  # fmt: skip
    written = [_figure(images.cpu(), maps, out / "explain.png")]
    figures: dict[str, Any] = {}
    if checks:
        found, figures = _run_checks(args, checks, model, bundle, device, methods)
        result.update(found)
    written += _save_figures(figures, out)
    written.append(out / "explain.json")
    written[-1].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
        if checks:
            _print_checks(result)
    for path in written:
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _check_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The checks asked for (``--sanity``, ``--faithfulness``) and their settings, defaults filled in, checked before
    any model is read: ``{}`` when neither is asked for. A check flag given without its check is refused."""
    from visionlab.checks import check_integer
    from visionlab.explain import GRANULARITIES

    asked = [name for name in ("sanity", "faithfulness") if getattr(args, name)]
    settings: dict[str, Any] = {}
    for dest, (readers, flag, default) in _CHECK_FLAGS.items():
        value = getattr(args, dest)
        if value is not None and not set(readers) & set(asked):
            raise CLIError(f"{flag}: only with {' or '.join('--' + r for r in readers)} (no check asked for reads it)")
        settings[dest] = default if value is None else value
    if not asked:
        return {}
    check_integer(settings["subset"], "subset", minimum=1)
    check_integer(settings["curve_steps"], "curve_steps", minimum=1)
    if settings["sanity_granularity"] not in GRANULARITIES:
        raise CLIError(f"--sanity-granularity: must be one of {', '.join(GRANULARITIES)}, "
                       f"got {settings['sanity_granularity']!r}")  # fmt: skip
    return {"asked": asked, **settings}


def _run_checks(
    args: argparse.Namespace,
    checks: dict[str, Any],
    model: torch.nn.Module,
    bundle: Any,
    device: torch.device,
    methods: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sanity check and/or the faithfulness curves of every method (options as the maps had them, Grad-CAM's
    layer resolved) on the seeded subset: ``(explain.json's new keys, {file name: figure})``."""
    import torch

    from visionlab.explain import (
        cascade_figure,
        cascading_randomization,
        compare_orderings,
        data_randomization,
        explainer,
        faithfulness_figure,
        similarity_figure,
    )

    n = min(checks["subset"], len(bundle.val))
    indices = torch.randperm(len(bundle.val), generator=torch.Generator().manual_seed(args.seed))[:n].sort().values
    images = torch.stack([bundle.val[int(i)][0] for i in indices]).to(device)
    explainers = {m["name"]: explainer(m["name"], **m["options"]) for m in methods}
    show = not args.no_progress
    found: dict[str, Any] = {"checks": {"num_images": n, "indices": indices.tolist(), "seed": args.seed}}
    figures: dict[str, Any] = {}
    if "sanity" in checks["asked"]:
        baselines = {"edge": explainer("edge"), "random": explainer("random", seed=args.seed)}
        sanity = cascading_randomization(
            model, images, {**explainers, **baselines}, generator=torch.Generator().manual_seed(args.seed),
            batch_size=args.batch_size, granularity=checks["sanity_granularity"], progress=show,
        )  # fmt: skip
        found["sanity"] = sanity.to_dict()
        figures.update({"cascade.png": cascade_figure(sanity), "similarity.png": similarity_figure(sanity)})
        if checks.get("random_model") is not None:
            data = data_randomization(model, checks["random_model"], images, {**explainers, **baselines},
                                      batch_size=args.batch_size)  # fmt: skip
            found["data_randomization"] = {**data.to_dict(), "random_model": checks["random_labels"]}
    if "faithfulness" in checks["asked"]:
        curves = compare_orderings(
            model, images, explainers, generator=torch.Generator().manual_seed(args.seed),
            steps=checks["curve_steps"], batch_size=args.batch_size, progress=show,
        )  # fmt: skip
        found["faithfulness"] = curves.to_dict()
        figures["faithfulness.png"] = faithfulness_figure(curves)
    found["check_figures"] = list(figures)
    return found, figures


def _random_labels_model(path: str, model: torch.nn.Module, bundle: Any, device: torch.device) -> torch.nn.Module:
    """The model of ``--random-labels CKPT`` in eval mode on ``device``, refused in one line naming the flag unless
    it is a visionlab checkpoint of the explained model's architecture (the same parameter and buffer names and
    shapes) taking the same input (channels and side of the split's images)."""
    from visionlab.cli.common import load_model_checkpoint
    from visionlab.engine import model_from_checkpoint
    from visionlab.errors import UserError

    try:
        state = load_model_checkpoint(path)
        other = model_from_checkpoint(state, device).eval()
    except UserError as exc:
        raise CLIError(f"--random-labels: {format_user_error(exc)}") from exc
    channels, side = bundle.val[0][0].shape[0], bundle.val[0][0].shape[-1]
    takes = (state["model_args"]["in_channels"], state["model_args"]["image_size"])
    if takes != (channels, side):
        raise CLIError(
            f"--random-labels: {path} takes {takes[0]}-channel {takes[1]}x{takes[1]} images, the explained model "
            f"{channels}-channel {side}x{side}: it must be the same architecture on the same input"
        )
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    if mine != theirs:
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        shown = ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else "")
        raise CLIError(
            f"--random-labels: {path} is not the explained model's architecture ({state['model_args']['name']}; "
            f"parameters that differ: {shown})"
        )
    return other


def _save_figures(figures: dict[str, Any], out: Path) -> list[Path]:
    """Each figure as ``out/NAME`` (110 dpi, as the report's plots); a check figure this run did not draw is removed,
    so the folder never shows a figure of an earlier run beside this run's explain.json."""
    for names in _CHECK_FIGURES.values():
        for name in names:
            if name not in figures:
                (out / name).unlink(missing_ok=True)
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        paths.append(out / name)
    return paths


def _explain(
    model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor, name: str, options: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The maps of method ``name`` and its record for explain.json: IG with its completeness gaps, Grad-CAM
    with the layer it used."""
    from visionlab.explain import attribution_map, explainer, integrated_gradients
    from visionlab.explain.gradcam import resolve_layer

    record: dict[str, Any] = {"name": name, "options": dict(options)}
    if name == "ig":
        kwargs = {k: options[k] for k in ("steps", "rule", "baseline", "blur_sigma", "batch_size")}
        result = integrated_gradients(model, images, target, **kwargs)
        gaps = result.completeness_gap.abs()
        record["completeness_gap"] = {
            "per_image": result.completeness_gap.tolist(), "mean_abs": gaps.mean().item(), "max_abs": gaps.max().item()
        }  # fmt: skip
        return attribution_map(result.attributions), record
    if name == "gradcam":
        record["options"]["layer"] = resolve_layer(model, images, options["layer"])
        return explainer(name, **record["options"])(model, images, target), record
    return explainer(name, **options)(model, images, target), record


def _figure(images: torch.Tensor, maps: list[torch.Tensor], path: Path) -> Path:
    """Rows = images, columns = the image then each method's heat map over it."""
    import torch

    from visionlab.explain import heatmap_overlay, save_grid

    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    columns = [rgb, *(heatmap_overlay(images, m) for m in maps)]
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: image 0's columns, then image 1's, ...
    return save_grid(tiles, path, nrow=len(columns))


def _print_table(result: dict[str, Any]) -> None:
    print(f"explained {result['n']} images of {result['model']} (predicted class); columns: "
          f"{', '.join(result['columns'])}")  # fmt: skip
    print(f"{'method':<12}{'options':<60}{'note'}")
    for m in result["methods"]:
        shown = ", ".join(f"{k}={v}" for k, v in m["options"].items() if v is not None and k != "batch_size")
        note = ""
        if "completeness_gap" in m:
            gap = m["completeness_gap"]
            note = f"completeness gap |Σ IG - Δf| mean {gap['mean_abs']:.3g}, max {gap['max_abs']:.3g}"
        print(f"{m['name']:<12}{shown or '-':<60}{note}")


def _print_checks(result: dict[str, Any]) -> None:
    """One row per method, then the edge and random baselines: the sanity verdict and similarities after the last
    step, the deletion and insertion AUCs."""
    checks, sanity, faith = result["checks"], result.get("sanity"), result.get("faithfulness")
    told = [f"checks on {checks['num_images']} images of the split (seed {checks['seed']})"]
    if sanity:
        line = next(iter(sanity["methods"].values()))["threshold"]
        told.append(f"sanity: cascading randomization by {sanity['granularity']} ({len(sanity['steps'])} steps), "
                    f"passes when the mean Spearman ends below {line:g}")  # fmt: skip
    if faith:
        told.append(f"faithfulness: {faith['steps']} steps")
    print("; ".join(told))
    rows = {r["method"]: r for r in sanity["table"]} if sanity else {}
    aucs = {r["method"]: r for r in faith["table"]} if faith else {}
    print(f"{'method':<18}{'sanity':<8}{'falls at':<22}{'Spearman':>9}{'SSIM':>7}{'deletion AUC ↓':>16}"
          f"{'insertion AUC ↑':>17}")  # fmt: skip
    for name in [*(m["name"] for m in result["methods"]), "edge", "random"]:
        row, auc = rows.get(name), aucs.get(name)
        label = f"{name} (baseline)" if name in ("edge", "random") else name
        verdict = "-" if row is None else "pass" if row["passed"] else "fail"
        falls = "-" if row is None or row["falls_at"] is None else row["falls_at"] or "(model)"
        numbers = ("-", "-") if row is None else (f"{row['final_spearman']:.3f}", f"{row['final_ssim']:.3f}")
        areas = ("-", "-") if auc is None else (f"{auc['deletion_auc']:.3f}", f"{auc['insertion_auc']:.3f}")
        print(f"{label:<18}{verdict:<8}{falls:<22}{numbers[0]:>9}{numbers[1]:>7}{areas[0]:>16}{areas[1]:>17}")
    if result.get("data_randomization"):
        _print_data_randomization(result["data_randomization"])


def _print_data_randomization(data: dict[str, Any]) -> None:
    """One row per method of the data randomization test: the verdict and the similarities to the random-label
    model's maps."""
    line = next(iter(data["methods"].values()))["threshold"]
    print(f"data randomization against {data['random_model']} (trained on shuffled labels): passes when the mean "
          f"Spearman is below {line:g}")  # fmt: skip
    print(f"{'method':<18}{'sanity':<8}{'Spearman':>9}{'SSIM':>7}")
    for row in data["table"]:
        label = f"{row['method']} (baseline)" if row["method"] in ("edge", "random") else row["method"]
        verdict = "pass" if row["passed"] else "fail"
        print(f"{label:<18}{verdict:<8}{row['final_spearman']:>9.3f}{row['final_ssim']:>7.3f}")
