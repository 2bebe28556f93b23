"""The report's "Certified robustness" section: the curve and the table of ``certify/certify.json`` (what
``visionlab certify`` writes), the command to run when it is missing, and a file lacking its keys refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from visionlab.errors import RunDirError
from visionlab.report import build_report, load_run
from visionlab.robustness import ABSTAIN, Certification

from .builders import make_run


def _section(page: str) -> str:
    return re.search(r'<section id="certified"[^>]*>(.*?)</section>', page, re.S).group(1)


def test_the_section_shows_the_curve_and_the_table_of_certify_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run")
    cert = Certification(
        prediction=torch.tensor([0, 1, ABSTAIN, 2]), p_lower=torch.tensor([0.9, 0.7, 0.4, 0.99], dtype=torch.float64),
        radius=torch.tensor([0.64, 0.26, 0.0, 1.16], dtype=torch.float64), label=torch.tensor([0, 0, 1, 2]),
        sigma=0.5, n0=100, n=1000, alpha=0.001,
    )  # fmt: skip
    (run / "certify").mkdir()
    (run / "certify" / "certify.json").write_text(json.dumps({"model": "run", **cert.to_dict([0.0, 0.5, 1.0])}))
    html = _section(build_report([load_run(run)]))
    assert html.count("<figure") == 1 and "data:image/png;base64," in html
    assert "Certified accuracy against L2 radius for run" in html
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert cells == ["0", "50.00", "0.5", "50.00", "1", "25.00"]
    assert "4 images, 1 abstained, σ = 0.5, n0 = 100, n = 1000, α = 0.001" in html
    assert "Not available" not in html


def test_without_certify_json_the_section_says_which_command_writes_it(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run")
    html = _section(build_report([load_run(run)]))
    assert "Not available" in html and "visionlab certify --resume" in html and "--sigma 0.25" in html


def test_a_certify_json_without_its_keys_is_refused_naming_the_file(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run")
    (run / "certify").mkdir()
    (run / "certify" / "certify.json").write_text('{"sigma": 0.25}')
    with pytest.raises(RunDirError, match=r"certify\.json: lacks one of"):
        load_run(run).certification()
