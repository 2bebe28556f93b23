"""``visionlab report`` on the command line: the page of a tiny real run, its numbers, and bad input as one line
with exit status 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from visionlab.cli import main
from visionlab.report.browser import find_chromium

from .conftest import TinyRuns


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
