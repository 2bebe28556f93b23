"""``visionlab eval`` and ``predict`` (:mod:`visionlab.cli.evaluate`) in process, with stand-ins for the data, the
distribution, the loader, the model and the evaluation: the exact arguments handed on, the lines and JSON printed,
the images found and converted, and every message compared whole."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from visionlab.cli import CLIError, evaluate, main

from .builders import model_state, parse_argv, save_state, val_bundle


# ------------------------------------------------------------------------------------------------ eval
@pytest.fixture
def eval_stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """cmd_eval with its data, distribution, loader, model and evaluation replaced by recorders."""
    seen: dict[str, Any] = {"dist": SimpleNamespace(is_main=True)}
    ckpt = save_state(model_state(), tmp_path / "m.pth.tar")
    seen["ckpt"] = str(ckpt)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: val_bundle())

    def init(device: str) -> tuple[Any, str]:
        seen["device"] = device
        return seen["dist"], "dev"

    monkeypatch.setattr("visionlab.runtime.distributed.init_distributed", init)
    monkeypatch.setattr("visionlab.runtime.distributed.shard_dataset", lambda d, dist: ("shard", list(d), dist))
    monkeypatch.setattr(
        "visionlab.engine.make_loader", lambda shard, bs, **kw: seen.setdefault("loader", (shard, bs, kw)) and "L"
    )
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", lambda state, device: ("model", device))

    def evaluate(model: Any, loader: Any, device: Any, **kw: Any) -> dict[str, Any]:
        seen["evaluate"] = (model, loader, device, kw)
        return {"top1": 12.3456, "top5": 50.0, "n": 7, "loss": 2.5, "other": 1}

    monkeypatch.setattr("visionlab.engine.evaluate", evaluate)
    return seen


def test_eval_hands_its_options_on_and_prints_one_line(eval_stand_ins: dict[str, Any], tmp_path: Path, capsys) -> None:
    """-b, -j, --limit-val, --tta and --device reach the loader and evaluation; the line has three decimals."""
    seen = eval_stand_ins
    ckpt = save_state(model_state(data="folder:/f"), tmp_path / "folder.pth.tar")  # files: -j reads them
    argv = ["eval", "--resume", str(ckpt), "-b", "5", "-j", "3", "--limit-val", "4", "--tta", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out == "* Acc@1 12.346 Acc@5 50.000\n"
    assert seen["device"] == "cpu"
    assert seen["loader"] == (("shard", [0, 1, 2, 3], seen["dist"]), 5, dict(train=False, workers=3, device="dev"))
    assert seen["evaluate"] == (("model", "dev"), "L", "dev", dict(tta=True, progress=True, dist=seen["dist"]))


def test_eval_json_defaults_and_no_progress(eval_stand_ins: dict[str, Any], three_workers: None, capsys) -> None:
    """--json prints exactly top1, top5, n and loss; defaults: auto device, 256 per batch, the machine's workers."""
    seen = eval_stand_ins
    assert main(["eval", "--resume", seen["ckpt"], "--json", "--no-progress"]) == 0
    assert capsys.readouterr().out == '{"top1": 12.3456, "top5": 50.0, "n": 7, "loss": 2.5}\n'
    assert seen["device"] == "auto"
    assert seen["loader"] == (("shard", list(range(7)), seen["dist"]), 256, dict(train=False, workers=3, device="dev"))
    assert seen["evaluate"][3] == dict(tta=False, progress=False, dist=seen["dist"])


def test_eval_on_another_rank_prints_nothing(eval_stand_ins: dict[str, Any], capsys) -> None:
    """Under torchrun only rank 0 prints, and the others show no progress."""
    eval_stand_ins["dist"].is_main = False
    assert main(["eval", "--resume", eval_stand_ins["ckpt"], "--json"]) == 0
    assert capsys.readouterr().out == ""
    assert eval_stand_ins["evaluate"][3]["progress"] is False


# ------------------------------------------------------------------------------------------------ predict
def _png(path: Path, size: tuple[int, int] = (6, 5)) -> Path:
    """An RGB PNG of random pixels (a resize or a crop changes its values)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


def test_image_paths_walks_directories_in_order(tmp_path: Path) -> None:
    """Files as given, directories recursively, sorted, image suffixes in any case, other files skipped."""
    a = _png(tmp_path / "d" / "b.png")
    b = _png(tmp_path / "d" / "sub" / "a.PNG")
    (tmp_path / "d" / "notes.txt").write_text("x")
    c = _png(tmp_path / "single.png")
    assert evaluate._image_paths([str(c), str(tmp_path / "d")]) == [c, a, b]


def test_image_paths_messages(tmp_path: Path) -> None:
    """A missing path, and nothing to classify, are one line each, whole."""
    with pytest.raises(CLIError) as caught:
        evaluate._image_paths([str(tmp_path / "none.png")])
    assert str(caught.value) == f"{tmp_path / 'none.png'}: no such image file or directory"
    (tmp_path / "empty").mkdir()
    for items in ([], [str(tmp_path / "empty")]):
        with pytest.raises(CLIError) as caught:
            evaluate._image_paths(items)
        assert str(caught.value) == (
            "predict: no images given (IMAGE paths, directories, or --data SPEC for its test split)"
        )


def test_predict_paths_of_a_dataset_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """--data: the test split by default, --split val on request; its messages whole."""
    test = SimpleNamespace(entries=[SimpleNamespace(path=Path("t1")), SimpleNamespace(path=Path("t2"))])
    val = SimpleNamespace(entries=[SimpleNamespace(path=Path("v1"))])
    loaded: list[str] = []
    monkeypatch.setattr(
        "visionlab.data.load_dataset", lambda spec: loaded.append(spec) or SimpleNamespace(test=test, val=val)
    )
    assert evaluate._predict_paths(parse_argv("predict", "--resume", "m", "--data", "folder:/f")) == [
        Path("t1"),
        Path("t2"),
    ]
    args = parse_argv("predict", "--resume", "m", "--data", "miniplaces:/m", "--split", "val")
    assert evaluate._predict_paths(args) == [Path("v1")]
    assert loaded == ["folder:/f", "miniplaces:/m"]
    monkeypatch.setattr("visionlab.data.load_dataset", lambda spec: SimpleNamespace(test=None, val=val))
    cases = [
        (["--data", "folder:/f"], "--data folder:/f: no test split (test.txt or images/test/); try --split val"),
        (["--data", "fashion-mnist:/x"], "--data fashion-mnist:/x: fashion-mnist keeps its images in arrays, not "
         "files; use eval"),
        (["x.png", "--data", "folder:/f"], "predict: give IMAGE paths or --data SPEC, not both"),
        (["x.png", "--split", "val"], "--split: only with --data SPEC (IMAGE paths are predicted as given)"),
        (["x.png", "--split", "test"], "--split: only with --data SPEC (IMAGE paths are predicted as given)"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(CLIError) as caught:
            evaluate._predict_paths(parse_argv("predict", "--resume", "m", *extra))
        assert str(caught.value) == message


class _Logits(torch.nn.Module):
    """A model whose probabilities are known: class scores log(1..C) for every image."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.scores = torch.log(torch.arange(1, classes + 1, dtype=torch.float32))
        self.batches: list[tuple[int, ...]] = []
        self.inputs: list[torch.Tensor] = []
        self.devices: list[Any] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(tuple(x.shape))
        self.inputs.append(x)
        return self.scores.expand(len(x), -1).clone()

    def built(self, state: dict[str, Any], device: Any) -> _Logits:
        """Stands in for model_from_checkpoint, recording the device asked for."""
        self.devices.append(device)
        return self


def test_predict_prints_the_top_k_of_each_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """Text and JSON lines, k capped at the number of classes, batches of -b, images converted for the model."""
    from visionlab.data import eval_transform
    from visionlab.data.decode import read_image

    model = _Logits(4)
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", model.built)
    state = model_state(in_channels=3)
    state["model_args"]["num_classes"] = 4
    state["class_names"] = ["ant", "bee", "cat", "dog"]
    ckpt = save_state(state, tmp_path / "m.pth.tar")
    images = [_png(tmp_path / "i" / f"{k}.png") for k in range(3)]
    argv = ["predict", "--resume", str(ckpt), "--topk", "2", "-b", "2", "--device", "cpu", str(tmp_path / "i")]
    assert main(argv) == 0
    block = "{}\n   40.00%  dog\n   30.00%  cat\n"
    assert capsys.readouterr().out == "".join(block.format(p) for p in images)
    assert model.batches == [(2, 3, 28, 28), (1, 3, 28, 28)] and model.devices == [torch.device("cpu")]
    assert torch.equal(model.inputs[1][0], eval_transform("small", 28, 3)(read_image(images[2])))
    assert main(["predict", "--resume", str(ckpt), "--topk", "9", "--json", str(images[0])]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == str(images[0]) and [(t["class"], t["index"]) for t in line["top"]] == [
        ("dog", 3), ("cat", 2), ("bee", 1), ("ant", 0),
    ]  # fmt: skip
    assert [t["prob"] for t in line["top"]] == pytest.approx([0.4, 0.3, 0.2, 0.1])


def test_predict_without_class_names_numbers_the_classes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """A checkpoint without class names or recipe: class indices as names, the miniplaces transform; top-5."""
    from visionlab.data import eval_transform
    from visionlab.data.decode import read_image

    model = _Logits(10)
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", model.built)
    state = model_state()
    del state["recipe"]
    ckpt = save_state(state, tmp_path / "m.pth.tar")
    image = _png(tmp_path / "a.png", (40, 30))
    assert main(["predict", "--resume", str(ckpt), str(image)]) == 0
    shares = [100 * k / 55 for k in (10, 9, 8, 7, 6)]
    assert capsys.readouterr().out == f"{image}\n" + "".join(
        f"  {s:6.2f}%  {k}\n" for s, k in zip(shares, (9, 8, 7, 6, 5), strict=True)
    )
    assert model.batches == [(1, 1, 28, 28)] and model.devices == [torch.device("cpu")]  # auto: the CPU here
    assert torch.equal(model.inputs[0][0], eval_transform("miniplaces", 28, 1)(read_image(image)))
    assert not torch.equal(model.inputs[0][0], eval_transform("small", 28, 1)(read_image(image)))
    assert math.isclose(sum(shares), 100 * 40 / 55)


def test_predict_an_image_that_cannot_be_decoded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """A broken file is a data error naming it and the decoder's reason."""
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", lambda state, device: _Logits(10))
    ckpt = save_state(model_state(), tmp_path / "m.pth.tar")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", "--resume", str(ckpt), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"visionlab: error: {bad}: cannot decode image (") and err.endswith(")\n")
