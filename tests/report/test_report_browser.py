"""``visionlab report`` of tiny real runs, rendered in headless Chromium: no console errors, every image decodes,
every section present, a screenshot that is not blank, a page that prints; no external address in the HTML."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlab.cli import main
from visionlab.report import SECTIONS
from visionlab.report.browser import Chromium, find_chromium

from ..conftest import TinyRuns

# src= / href= values that leave the file: a scheme-relative //host, http(s):, or any other scheme but data:.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)(?!image/png;base64,)""", re.I)


@pytest.fixture(scope="module")
def report(tiny_runs: TinyRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    argv = ["report", str(tiny_runs.native), str(tiny_runs.custom), "-o", str(out), "--limit-val", "48",
            "--num", "12"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def browser() -> Chromium:
    if find_chromium() is None:
        reason = "Chromium is not installed: apt-get install chromium (Debian's package; .ci/run installs it)"
        if os.environ.get("CI"):  # CI installs it: a missing browser there is a broken set-up, not a skip
            pytest.fail(reason)
        pytest.skip(reason)
    with Chromium(width=1280, height=900) as chromium:
        yield chromium


def test_the_html_has_no_external_address(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    assert not EXTERNAL.search(text)
    assert "<script" not in text.lower()
    assert EXTERNAL.search('<img src="https://example.org/x.png">')  # the pattern does catch what it should
    assert EXTERNAL.search("<a href='//cdn.example.org/a.css'>")
    assert not EXTERNAL.search('<img src="data:image/png;base64,AAAA">')


def test_report_renders_in_chromium(report: Path, browser: Chromium, tiny_runs: TinyRuns) -> None:
    browser.open(report)
    assert browser.errors == []

    images = browser.evaluate(
        "Array.from(document.images, i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,"
        " section: i.closest('section').id}))"
    )
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images
    assert all(i["alt"].strip() for i in images)
    per_section: dict[str, int] = {}
    for i in images:
        per_section[i["section"]] = per_section.get(i["section"], 0) + 1
    # curves of both runs (one figure) | 12 cards per run | 3 saliency files (native) + 2 computed grids (custom) |
    # the explain figure + its cascade, similarity and faithfulness figures (native) | 3 attack grids (native) | eps
    # and steps plots (native) | corruption heat map (native) | the certified accuracy curve (native) | the conv
    # pair's curves
    assert per_section == {"curves": 1, "predictions": 24, "saliency": 5, "explanations": 4, "adversarial": 3,
                           "robustness": 2, "corruptions": 1, "certified": 1, "conv": 1}  # fmt: skip

    sections = browser.evaluate(
        "Array.from(document.querySelectorAll('main > section'), s => [s.id, s.querySelector('h2').textContent])"
    )
    assert sections == [list(s) for s in SECTIONS]
    headings = browser.evaluate("Array.from(document.querySelectorAll('h3'), h => h.textContent)")
    assert headings.count("native") == 9 and headings.count("custom") == 9  # each run under each per-run section
    # The native run has every artefact; the custom run lacks explain, attack, sweep, corruption and certification
    # files: its sections say how to get them.
    missing = browser.evaluate(
        "Array.from(document.querySelectorAll('p.missing'), p => [p.closest('section').id, p.textContent])"
    )
    assert {s for s, _ in missing} == {"metrics", "explanations", "adversarial", "robustness", "corruptions",
                                       "certified"}  # fmt: skip
    assert all(str(tiny_runs.custom / "model_best.pth.tar") in text for _, text in missing)
    tables = browser.evaluate("document.querySelectorAll('table caption').length")
    assert tables >= 10

    shot = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("L"), dtype=np.float64)
    assert shot.shape == (900, 1280)
    assert shot.std() > 20  # text, tables and figures, not an empty white page

    browser.send("Emulation.setEmulatedMedia", {"media": "print"}, session=True)  # the page's print layout
    try:
        assert browser.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
    finally:
        browser.send("Emulation.setEmulatedMedia", {"media": ""}, session=True)
    assert browser.errors == []


def test_chromium_reports_a_broken_page(tmp_path: Path, browser: Chromium) -> None:
    """The check above can fail: a missing image is an error and has no natural width."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html lang="en"><title>x</title><img src="missing.png" alt="gone">')
    browser.open(page)
    assert any("ERR_FILE_NOT_FOUND" in e for e in browser.errors)
    assert browser.evaluate("document.images[0].naturalWidth") == 0
