"""``visionlab report`` (:mod:`visionlab.cli.report`): first its command code with stand-ins for the report library
and the browser (what it hands each step, exactly what it prints, its notes whole), then the command on tiny real
runs: the page, its numbers, and bad input as one line with exit status 2."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from visionlab.cli import main
from visionlab.cli import report as cli_report
from visionlab.errors import CheckpointError
from visionlab.report.browser import find_chromium

from ..conftest import TinyRuns


# ------------------------------------------------------------------------------------------------ with stand-ins
class _Run:
    """A run as :func:`visionlab.report.load_runs` returns it: a path, a checkpoint or None, and its files."""

    def __init__(self, path: Path, checkpoint: Path | None, saliency: bool = False, data: str = "folder:/f") -> None:
        self.path, self.checkpoint, self.saliency = path, checkpoint, saliency
        self.config = {"data": data}

    def file(self, *parts: str) -> Path | None:
        return self.path.joinpath(*parts) if parts == ("saliency", "saliency.png") and self.saliency else None


@pytest.fixture
def report_lib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """load_runs, build_report, write_page and _analyse replaced by recorders."""
    seen: dict[str, Any] = {"analysed": []}
    runs = [_Run(tmp_path / "a", tmp_path / "a" / "model_best.pth.tar"), _Run(tmp_path / "b", None)]
    seen["runs"] = runs
    monkeypatch.setattr("visionlab.report.load_runs", lambda paths: seen.setdefault("paths", paths) and runs)
    monkeypatch.setattr("visionlab.report.build_report", lambda r, a: seen.setdefault("built", (r, a)) and "DOC")

    def write_page(document: str, out: str) -> Path:
        seen["written"] = (document, out)
        return Path(out)

    monkeypatch.setattr("visionlab.report.write_page", write_page)

    def analyse(run: Any, checkpoint: Path, args: argparse.Namespace) -> str:
        seen["analysed"].append((run, checkpoint, args))
        return f"analysis of {checkpoint.name}"

    monkeypatch.setattr(cli_report, "_analyse", analyse)
    return seen


def test_report_analyses_each_checkpoint_and_writes_one_page(
    report_lib: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Runs with a checkpoint are analysed, the page is written to -o, and two lines say where and how to open it."""
    monkeypatch.chdir(tmp_path)
    assert main(["report", "ra", "rb", "-o", "out/p.html"]) == 0
    seen = report_lib
    assert seen["paths"] == ["ra", "rb"]
    (run, checkpoint, args), = seen["analysed"]  # fmt: skip
    assert run is seen["runs"][0] and checkpoint == tmp_path / "a" / "model_best.pth.tar"
    assert (args.num, args.batch_size, args.limit_val, args.device, args.data_root) == (20, 256, None, None, None)
    assert seen["built"] == (seen["runs"], {tmp_path / "a": "analysis of model_best.pth.tar"})
    assert seen["written"] == ("DOC", "out/p.html")
    assert capsys.readouterr().out == (
        f"wrote {tmp_path / 'out' / 'p.html'}\nopen it in any browser, e.g. xdg-open out/p.html (it needs no network)\n"
    )


def test_report_default_page_name(report_lib: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -o the page is report.html."""
    monkeypatch.chdir(tmp_path)
    assert main(["report", "ra"]) == 0
    assert report_lib["written"] == ("DOC", "report.html")


def test_report_screenshot_line(
    report_lib: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """--screenshot: the page is photographed and a third line names the PNG."""
    shots: list[tuple[Path, Path]] = []
    monkeypatch.setattr(cli_report, "_screenshot", lambda page, out: shots.append((page, out)) or out)
    assert main(["report", "ra", "-o", str(tmp_path / "p.html"), "--screenshot", "s.png"]) == 0
    assert shots == [(tmp_path / "p.html", Path("s.png"))]
    assert capsys.readouterr().out.splitlines()[2] == "wrote s.png"


def test_report_checks_its_options_before_reading_runs(report_lib: dict[str, Any], capsys) -> None:
    """A bad --device is refused, whole, before any run is loaded."""
    assert main(["report", "ra", "--device", "gpu"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'\n"
    assert "paths" not in report_lib


def test_report_takes_a_data_root_only_when_a_run_reads_one(report_lib: dict[str, Any], tmp_path: Path, capsys) -> None:
    """--data-root with no run on the plain fashion-mnist spec is one whole line before any analysis; with one
    such run among others it reaches the analyses (each run reads it or not)."""
    assert main(["report", "ra", "--data-root", "/d", "-o", str(tmp_path / "p.html")]) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --data-root: none of these runs reads fashion-mnist from a data root (each names its "
        "folder)\n"
    )
    assert report_lib["analysed"] == []
    report_lib["runs"].append(_Run(tmp_path / "c", None, data="fashion-mnist"))
    assert main(["report", "ra", "--data-root", "/d", "-o", str(tmp_path / "p.html")]) == 0
    assert [args.data_root for _, _, args in report_lib["analysed"]] == ["/d"]


def _args(**extra: Any) -> argparse.Namespace:
    values = dict(runs=["r"], out="report.html", data_root=None, limit_val=None, num=20, batch_size=256,
                  device=None, no_check_images=False, screenshot=None)  # fmt: skip
    return argparse.Namespace(**{**values, **extra})


class _Split(list):
    """A validation split (its items are its images)."""


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """cli.model_flags.load_model and report.analyse replaced by recorders."""
    seen: dict[str, Any] = {"bundle": SimpleNamespace(val=_Split(range(6)), class_names=["x", "y"])}
    seen["state"] = {"class_names": ["cat", "dog"]}

    def load(namespace: argparse.Namespace, resume: str, *, strict: bool = True) -> tuple[Any, ...]:
        seen["load"] = (namespace, resume, strict)
        return seen["state"], "MODEL", seen["bundle"], "DEV"

    monkeypatch.setattr("visionlab.cli.report.load_model", load)

    def analyse(model: Any, dataset: Any, names: Any, device: Any, **kw: Any) -> str:
        seen["analyse"] = (model, list(dataset), names, device, kw)
        return "ANALYSIS"

    monkeypatch.setattr("visionlab.report.analyse", analyse)
    return seen


def test_analyse_loads_the_checkpoint_as_eval_does_and_hands_the_options_on(loaded: dict[str, Any]) -> None:
    """No --data for a report: the checkpoint's own; --limit-val, -b, --num and saliency reach the analysis."""
    run = _Run(Path("/r"), Path("/r/model_best.pth.tar"))
    args = _args(limit_val=4, batch_size=8, num=3, data_root="/d")
    assert cli_report._analyse(run, Path("/r/model_best.pth.tar"), args) == "ANALYSIS"
    namespace, resume, strict = loaded["load"]
    assert vars(namespace) == {**vars(args), "data": None} and resume == "/r/model_best.pth.tar"
    assert strict is False  # --data-root applies to the runs on fashion-mnist, not refused for the others
    assert loaded["analyse"] == (
        "MODEL", [0, 1, 2, 3], ["cat", "dog"], "DEV",
        dict(checkpoint=Path("/r/model_best.pth.tar"), batch_size=8, num_images=3, with_saliency=True),
    )  # fmt: skip


def test_analyse_falls_back_to_the_datasets_class_names_and_skips_drawn_saliency(loaded: dict[str, Any]) -> None:
    """A checkpoint without class names: the dataset's; a run with saliency.png: no saliency recomputed."""
    loaded["state"] = {}
    run = _Run(Path("/r"), Path("/r/m.pth"), saliency=True)
    cli_report._analyse(run, Path("/r/m.pth"), _args())
    _, images, names, _, kw = loaded["analyse"]
    assert (images, names, kw["with_saliency"], kw["batch_size"], kw["num_images"]) == (
        [0, 1, 2, 3, 4, 5], ["x", "y"], False, 256, 20,
    )  # fmt: skip


def test_analyse_of_an_unreadable_checkpoint_is_its_message(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A user error while loading: one note on stderr, and the message becomes the model sections' text."""

    def load(namespace: argparse.Namespace, resume: str, *, strict: bool = True) -> None:
        raise CheckpointError(f"{resume}: checkpoint not found")

    monkeypatch.setattr("visionlab.cli.report.load_model", load)
    assert cli_report._analyse(_Run(Path("/r"), None), Path("/r/m.pth"), _args()) == "/r/m.pth: checkpoint not found"
    assert capsys.readouterr().err == (
        "[visionlab] note: /r/m.pth: /r/m.pth: checkpoint not found (its model sections say so)\n"
    )


def test_screenshot_takes_the_top_of_the_page_at_1280_by_1600(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The browser is opened at 1280x1600 on the page; its PNG lands at the path given, folders made."""
    seen: list[Any] = []

    class Browser:
        def __init__(self, **kw: Any) -> None:
            seen.append(kw)

        def __enter__(self) -> Browser:
            return self

        def __exit__(self, *exc: Any) -> None:
            seen.append("closed")

        def open(self, page: Path) -> None:
            seen.append(page)

        def screenshot(self) -> bytes:
            return b"PNGDATA"

    monkeypatch.setattr("visionlab.report.browser.Chromium", Browser)
    out = tmp_path / "deep" / "er" / "s.png"
    assert cli_report._screenshot(tmp_path / "p.html", out) == out
    assert out.read_bytes() == b"PNGDATA"
    assert seen == [dict(width=1280, height=1600), tmp_path / "p.html", "closed"]


# ------------------------------------------------------------------------------------------------ on tiny real runs
def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("visionlab: error: "), err
    return lines[0].removeprefix("visionlab: error: ")


def test_attack_writes_its_numbers_where_the_report_reads_them(tiny_runs: TinyRuns) -> None:
    result = json.loads((tiny_runs.native / "attack" / "attack.json").read_text())
    assert result["n"] == 32 and result["attack"]["steps"] == 2 and result["attack"]["eps"] == 0.1
    assert 0 <= result["robust_top1"] <= 100 and set(result) >= {"clean_top1", "clean_top5", "robust_top5"}


def test_report_of_a_tiny_run(tiny_runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(tiny_runs.native), "--out", str(out), "--limit-val", "40", "--num", "5"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out.resolve()}" in printed and "xdg-open" in printed
    page = out.read_text(encoding="utf-8")
    confusion = re.search(r'<section id="confusion".*?</section>', page, re.S).group(0)
    assert sum(int(c) for c in re.findall(r"<td[^>]*>(\d+)</td>", confusion)) == 40  # every evaluated image once
    assert "on 40 images (model_best.pth.tar)" in page
    assert page.count('<ul class="samples">') == 1 and page.count('<ul class="samples"><li') == 1
    assert len(re.findall(r'<li class="(?:right|wrong)">', page)) == 5
    assert "Trouser" in confusion  # class names come from the dataset
    attack = json.loads((tiny_runs.native / "attack" / "attack.json").read_text())
    assert f"{attack['robust_top1']:.2f}" in page and attack["attack"]["repr"].replace("'", "&#x27;") in page
    assert "written by <code>visionlab saliency</code>" in page  # the saliency command's grids, not recomputed
    assert 'class="missing"' not in page.split('<section id="conv"')[0]  # every artefact there: nothing missing


def test_a_checkpoint_that_cannot_be_read_still_gives_a_report(
    tiny_runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "broken"
    shutil.copytree(tiny_runs.custom, run)
    (run / "model_best.pth.tar").write_bytes(b"truncated")
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    assert "model_best.pth.tar" in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert page.count("the report could not evaluate") == 4  # per-class, confusion, predictions, saliency
    assert '<section id="curves"' in page and "<img" in page  # the curves are still drawn


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "nowhere", "{path}: no such run directory"),
        (lambda root: (root / "f.txt").write_text("x") and root / "f.txt", "{path}: not a directory"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "{path}: not a run directory"),
    ],
)
def test_bad_run_directory_is_one_line_exit_2(
    tmp_path: Path, make, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path)
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected.format(path=path))
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--num", "0"], "--num: must be an integer >= 1, got 0"),
        (["--limit-val", "0"], "--limit-val: must be an integer >= 1, got 0"),
        (["-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    ],
)
def test_bad_report_options_are_one_line_exit_2(
    tmp_path: Path, extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path), *extra]) == 2
    assert _one_error_line(capsys.readouterr().err) == expected


def test_screenshot_option(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (Debian's package; .ci/run installs it)")
    shot = tmp_path / "shot.png"
    assert main(["report", str(tiny_runs.custom), "-o", str(tmp_path / "r.html"), "--screenshot", str(shot)]) == 0
    with Image.open(shot) as picture:
        assert picture.format == "PNG" and picture.size == (1280, 1600)


def test_screenshot_without_chromium_is_one_line_exit_2(
    tiny_runs: TinyRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("visionlab.report.browser.find_chromium", lambda: None)
    argv = ["report", str(tiny_runs.custom), "-o", str(tmp_path / "r.html"), "--screenshot", str(tmp_path / "s.png")]
    assert main(argv) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("no Chromium found on PATH")
    assert (tmp_path / "r.html").is_file() and not (tmp_path / "s.png").exists()  # the page itself was written
