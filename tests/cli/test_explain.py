"""``visionlab explain`` end to end on a tiny checkpoint and on a ``--model-factory`` model: the maps it draws are
the library's, explain.json records the options, the Grad-CAM layer and the IG gaps, ``--sanity``/``--faithfulness``
record what the library finds on the same seeded subset, and each bad argument is one line naming its flag with
exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.cli import main
from visionlab.data import load_dataset
from visionlab.explain import (
    cascading_randomization,
    compare_orderings,
    explain,
    explainer,
    heatmap_overlay,
    integrated_gradients,
    save_grid,
)
from visionlab.models import load_classifier

from .builders import checkpoint_model, checkpoint_val, pixels


def test_explains_a_checkpoint_with_every_method_by_default(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--resume", str(ckpt), "--num", "3", "--smoothgrad-samples", "2", "--ig-steps", "8",
                 "--no-progress"]) == 0  # fmt: skip
    out = ckpt.parent / "explain"
    result = json.loads((out / "explain.json").read_text())
    val = checkpoint_val(ckpt)
    images = torch.stack([val[i][0] for i in range(3)])
    model = checkpoint_model(ckpt)
    predicted = model(images).argmax(1)
    assert result["columns"] == ["image", "saliency", "smoothgrad", "ig", "gradcam"]
    assert result["indices"] == [0, 1, 2] and result["predicted"] == predicted.tolist()
    assert result["labels"] == [int(val[i][1]) for i in range(3)]
    names = [m["name"] for m in result["methods"]]
    assert names == ["saliency", "smoothgrad", "ig", "gradcam"]
    options = {m["name"]: m["options"] for m in result["methods"]}
    assert options["smoothgrad"] == {"samples": 2, "noise_std": 0.1, "seed": 0, "batch_size": 250}
    assert options["ig"] == {"steps": 8, "rule": "gausslegendre", "baseline": "black", "blur_sigma": None,
                             "batch_size": 250}  # fmt: skip
    assert options["gradcam"]["layer"] == "net.features"
    gap = integrated_gradients(model, images, predicted, steps=8).completeness_gap
    np.testing.assert_allclose(result["methods"][2]["completeness_gap"]["per_image"], gap.tolist(), rtol=1e-5)
    # the figure: rows = images, columns = the image then each method's overlay
    maps = [explain(model, images, name, **opts) for name, opts in options.items()]
    columns = [images.expand(-1, 3, -1, -1), *(heatmap_overlay(images, m) for m in maps)]
    expected = save_grid(torch.stack(columns, 1).flatten(0, 1), tmp_path / "expected.png", nrow=5)
    np.testing.assert_array_equal(pixels(out / "explain.png"), pixels(expected))
    with Image.open(out / "explain.png") as picture:
        assert picture.size == (5 * 30 + 2, 3 * 30 + 2)
    printed = capsys.readouterr().out
    assert "completeness gap" in printed and f"wrote {out / 'explain.json'}" in printed


def test_json_prints_explain_json_as_one_line(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "here"
    argv = ["explain", "--resume", str(ckpt), "--num", "2", "--method", "gradcam", "ig", "--baseline", "blur",
            "--ig-steps", "3", "--layer", "net.features.9", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    result = json.loads(line)
    assert result == json.loads((out / "explain.json").read_text())
    assert result["columns"] == ["image", "gradcam", "ig"]
    assert result["methods"][0]["options"]["layer"] == "net.features.9"
    assert result["methods"][1]["options"]["baseline"] == "blur"


FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 10))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
"""


def test_explains_a_model_factory_next_to_its_file(ckpt: Path, tmp_path: Path) -> None:
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY, encoding="utf-8")
    data = f"fashion-mnist:{ckpt.parent.parent / 'fm'}"
    argv = ["explain", "--model-factory", f"{factory}:build", "--data", data, "--num", "2", "--method", "gradcam",
            "saliency"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert result["model"] == "build" and result["methods"][0]["options"]["layer"] == "net.2"  # the 2x2 pool
    model = load_classifier(factory=f"{factory}:build", in_channels=1).eval()
    val = load_dataset(data).val
    images = torch.stack([val[i][0] for i in range(2)])
    assert result["predicted"] == model(images).argmax(1).tolist()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "lime"], "--method: unknown method 'lime'; methods: saliency, smoothgrad, ig, gradcam"),
        (["--method", "ig", "ig"], "--method: each method once, got ig ig"),
        (["--method", "ig", "--ig-steps", "0"], "--ig-steps: must be an integer >= 1, got 0"),
        (
            ["--method", "ig", "--baseline", "white"],
            "--baseline: must be one of ('black', 'blur') or a tensor, got 'white'",
        ),
        (["--method", "ig", "--layer", "net.fc"], "--layer: only with --method gradcam (no chosen method reads it)"),
        (["--method", "saliency", "--ig-steps", "4"], "--ig-steps: only with --method ig (no chosen method reads it)"),
        (["--smoothgrad-samples", "0"], "--smoothgrad-samples: must be an integer >= 1, got 0"),
        (
            ["--method", "smoothgrad", "--noise-std", "-1"],
            "--noise-std: must be a finite number >= 0 (pixel units), got -1.0",
        ),
        (["--num", "0"], "--num: must be an integer >= 1, got 0"),
        (["--seed", "-2"], "--seed: must be an integer >= 0, got -2"),
        (
            ["--method", "gradcam", "--layer", "net.fc"],
            "--layer: 'net.fc': its output is not a convolutional feature "
            "map (N, C, h, w); usable layers: net.features.0, ",
        ),
        (["--method", "gradcam", "--layer", "nowhere"], "--layer: 'nowhere': no such module; usable layers: "),
        (["--subset", "5"], "--subset: only with --sanity or --faithfulness (no check asked for reads it)"),
        (["--sanity", "--curve-steps", "5"], "--curve-steps: only with --faithfulness (no check asked for reads it)"),
        (
            ["--faithfulness", "--sanity-granularity", "block"],
            "--sanity-granularity: only with --sanity (no check asked for reads it)",
        ),
        (["--sanity", "--subset", "0"], "--subset: must be an integer >= 1, got 0"),
        (["--faithfulness", "--curve-steps", "0"], "--curve-steps: must be an integer >= 1, got 0"),
        (
            ["--sanity", "--sanity-granularity", "stage"],
            "--sanity-granularity: must be one of layer, block, got 'stage'",
        ),
    ],
)
def test_a_bad_argument_is_one_line_naming_its_flag(
    ckpt: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--resume", str(ckpt), "--num", "2", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"visionlab: error: {message}")
    assert not (ckpt.parent / "explain").exists()


def test_gradcam_on_a_model_without_a_convolution_is_one_line(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY, encoding="utf-8")
    argv = ["explain", "--model-factory", f"{factory}:mlp", "--data", f"fashion-mnist:{ckpt.parent.parent / 'fm'}",
            "--method", "gradcam"]  # fmt: skip
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("visionlab: error: --method: gradcam needs a convolutional feature map (N, C, h, w) and "
                           "this model has none")  # fmt: skip


def test_sanity_and_faithfulness_write_what_the_library_finds_on_the_same_seeded_subset(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explain", "--resume", str(ckpt), "--num", "2", "--method", "saliency", "gradcam", "--sanity",
            "--faithfulness", "--subset", "5", "--curve-steps", "4", "--seed", "3", "-b", "3"]  # fmt: skip
    assert main(argv) == 0
    out = ckpt.parent / "explain"
    result = json.loads((out / "explain.json").read_text())
    indices = torch.randperm(24, generator=torch.Generator().manual_seed(3))[:5].sort().values
    val, model = checkpoint_val(ckpt), checkpoint_model(ckpt)
    images = torch.stack([val[int(i)][0] for i in indices])
    assert result["checks"] == {"num_images": 5, "indices": indices.tolist(), "seed": 3}
    methods = {"saliency": explainer("saliency", batch_size=3),
               "gradcam": explainer("gradcam", layer="net.features", batch_size=3)}  # fmt: skip
    baselines = {"edge": explainer("edge"), "random": explainer("random", seed=3)}
    sanity = cascading_randomization(model, images, {**methods, **baselines},
                                     generator=torch.Generator().manual_seed(3), batch_size=3)  # fmt: skip
    curves = compare_orderings(model, images, methods, generator=torch.Generator().manual_seed(3), steps=4,
                               batch_size=3)  # fmt: skip
    assert result["sanity"] == json.loads(json.dumps(sanity.to_dict()))
    assert result["faithfulness"] == json.loads(json.dumps(curves.to_dict()))
    assert result["sanity"]["granularity"] == "layer" and len(result["sanity"]["steps"]) == 8
    assert list(result["sanity"]["methods"]) == ["saliency", "gradcam", "edge", "random"]
    assert [r["method"] for r in result["faithfulness"]["table"]] == ["saliency", "gradcam", "random", "edge"]
    assert result["check_figures"] == ["cascade.png", "similarity.png", "faithfulness.png"]
    for name in result["check_figures"]:
        with Image.open(out / name) as picture:
            assert picture.format == "PNG"
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines() if line[18:26].strip() in ("pass", "fail")]
    table = {line[:18].strip().removesuffix(" (baseline)"): line for line in rows}
    assert list(table) == ["saliency", "gradcam", "edge", "random"]
    for row in sanity.table():
        auc = {r["method"]: r for r in curves.table()}[row["method"]]
        expected = [f"{row['final_spearman']:.3f}", f"{row['final_ssim']:.3f}", f"{auc['deletion_auc']:.3f}",
                    f"{auc['insertion_auc']:.3f}"]  # fmt: skip
        assert table[row["method"]].split()[-4:] == expected
        assert table[row["method"]][18:26].strip() == ("pass" if row["passed"] else "fail")
    assert "edge (baseline)" in captured.out and "sanity check: cascade steps: 8/8" in captured.err
    assert "faithfulness: orderings: 4/4 (100%)" in captured.err


def test_checks_run_on_a_model_factory_by_block_and_a_subset_larger_than_the_split_takes_it_all(
    ckpt: Path, tmp_path: Path
) -> None:
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY.replace("nn.ReLU()", "nn.BatchNorm2d(4), nn.ReLU()"), encoding="utf-8")
    argv = ["explain", "--model-factory", f"{factory}:build", "--data", f"fashion-mnist:{ckpt.parent.parent / 'fm'}",
            "--num", "2", "--method", "saliency", "--sanity", "--sanity-granularity", "block", "--faithfulness",
            "--subset", "1000", "--curve-steps", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert result["checks"]["num_images"] == 24 and result["checks"]["indices"] == list(range(24))
    assert result["sanity"]["granularity"] == "block" and result["sanity"]["steps"] == ["net.5", "net.0+1"]
    assert result["faithfulness"]["num_images"] == 24 and result["faithfulness"]["steps"] == 2


def test_a_run_without_the_checks_removes_their_figures_from_an_earlier_run(ckpt: Path) -> None:
    base = ["explain", "--resume", str(ckpt), "--num", "2", "--method", "gradcam", "--no-progress"]
    assert main([*base, "--sanity", "--faithfulness", "--subset", "2", "--curve-steps", "2"]) == 0
    out = ckpt.parent / "explain"
    assert {"cascade.png", "similarity.png", "faithfulness.png"} <= {p.name for p in out.iterdir()}
    assert main([*base, "--faithfulness", "--subset", "2", "--curve-steps", "2"]) == 0
    assert {p.name for p in out.iterdir()} == {"explain.png", "explain.json", "faithfulness.png"}
    assert "sanity" not in json.loads((out / "explain.json").read_text())
    assert main(base) == 0
    assert {p.name for p in out.iterdir()} == {"explain.png", "explain.json"}


def _random_label_run(ckpt: Path) -> Path:
    """A 1-epoch run of ``train --shuffle-labels`` on the tiny checkpoint's data: its model_best."""
    run = ckpt.parent.parent / "shuffled"
    argv = ["train", "--data", f"fashion-mnist:{ckpt.parent.parent / 'fm'}", "--shuffle-labels", "--epochs", "1",
            "-b", "4", "-j", "0", "--no-progress", "--no-tensorboard", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    return run / "model_best.pth.tar"


def test_random_labels_adds_the_data_randomization_the_library_finds_beside_the_cascade(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionlab.explain import data_randomization

    shuffled = _random_label_run(ckpt)
    capsys.readouterr()
    argv = ["explain", "--resume", str(ckpt), "--num", "2", "--method", "saliency", "gradcam", "--sanity",
            "--subset", "5", "--seed", "3", "-b", "3", "--random-labels", str(shuffled), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((ckpt.parent / "explain" / "explain.json").read_text())
    indices = torch.randperm(24, generator=torch.Generator().manual_seed(3))[:5].sort().values
    images = torch.stack([checkpoint_val(ckpt)[int(i)][0] for i in indices])
    methods = {"saliency": explainer("saliency", batch_size=3),
               "gradcam": explainer("gradcam", layer="net.features", batch_size=3),
               "edge": explainer("edge"), "random": explainer("random", seed=3)}  # fmt: skip
    data = data_randomization(checkpoint_model(ckpt), checkpoint_model(shuffled), images, methods, batch_size=3)
    assert result["data_randomization"] == {**json.loads(json.dumps(data.to_dict())), "random_model": str(shuffled)}
    assert result["data_randomization"]["kind"] == "data" and result["data_randomization"]["steps"] == ["random labels"]
    assert result["sanity"]["kind"] == "cascading"  # the cascade still there, beside it
    out = capsys.readouterr().out
    assert f"data randomization against {shuffled} (trained on shuffled labels)" in out
    block = out[out.index("data randomization against") :].splitlines()[2:]
    assert block[4].startswith("wrote ")  # the four rows, then the files
    for line, row in zip(block[:4], data.table(), strict=True):
        name = f"{row['method']} (baseline)" if row["method"] in ("edge", "random") else row["method"]
        verdict = "pass" if row["passed"] else "fail"
        assert line.split() == [*name.split(), verdict, f"{row['final_spearman']:.3f}", f"{row['final_ssim']:.3f}"]


def _checkpoint_like(ckpt: Path, name: str, **changes: object) -> Path:
    """A copy of the tiny checkpoint with its model rebuilt from changed arguments (another architecture)."""
    from visionlab.engine import load_checkpoint
    from visionlab.engine.checkpoint import save_checkpoint
    from visionlab.models import build_model

    state = load_checkpoint(ckpt)
    args = {**state["model_args"], **changes}
    model = build_model(**args)
    path = ckpt.parent.parent / name / "model_best.pth.tar"
    save_checkpoint({**state, "model_args": args, "model": model.state_dict()}, path)
    return path


def test_a_random_labels_model_that_cannot_be_compared_is_one_line_naming_the_flag(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["explain", "--resume", str(ckpt), "--num", "2", "--method", "saliency", "--no-progress"]
    other_head = _checkpoint_like(ckpt, "five", num_classes=5)
    other_input = _checkpoint_like(ckpt, "rgb", in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    for flags, message in (
        (["--random-labels", str(ckpt)], "--random-labels: only with --sanity (no check asked for reads it)"),
        (["--sanity", "--random-labels", str(ckpt.parent / "missing.pth.tar")], "--random-labels: "),
        (["--sanity", "--random-labels", str(other_head)],
         f"--random-labels: {other_head} is not the explained model's architecture (simplenet; parameters that "
         "differ: net.fc.bias, net.fc.weight)"),
        (["--sanity", "--random-labels", str(other_input)],
         f"--random-labels: {other_input} takes 3-channel 28x28 images, the explained model 1-channel 28x28"),
    ):  # fmt: skip
        assert main([*base, *flags]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"visionlab: error: {message}"), line
    assert not (ckpt.parent / "explain").exists()
