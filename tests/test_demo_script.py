"""``make demo``'s script: the stages in order, each a valid visionlab command line, a table of stage times and
the report's path (a stand-in ``visionlab`` records the calls); and the report those very commands write, replayed
in this process on a tiny dataset, shows every section."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from visionlab.cli import build_parser, main
from visionlab.report import SECTIONS

from .conftest import make_fashion_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def _record(tmp_path: Path, run: Path) -> tuple[list[list[str]], str]:
    """The demo's visionlab command lines, as a stand-in ``visionlab`` received them, and the script's stdout."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "visionlab"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {calls}\necho >> {calls}\n')
    fake.chmod(0o755)
    out = subprocess.run([str(SCRIPT), str(fake), str(run)], capture_output=True, text=True, check=True).stdout
    return [shlex.split(line) for line in calls.read_text().splitlines()], out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]], str]:
    """``(run directory, command lines, stdout)`` of one scripted demo."""
    tmp_path = tmp_path_factory.mktemp("demo")
    run = tmp_path / "run"
    return run, *_record(tmp_path, run)


def test_demo_runs_the_tour_in_order_with_valid_commands(recorded: tuple[Path, list[list[str]], str]) -> None:
    run, argvs, out = recorded
    commands = ["data", "train", "eval", "saliency", "explain", "attack", "robustness", "corruptions", "certify",
                "train", "train", "report"]  # fmt: skip
    assert [a[0] for a in argvs] == commands
    parser = build_parser()
    for argv in argvs:
        parser.parse_args(argv)  # every flag exists (argparse exits on an unknown one)
    assert argvs[1][argvs[1].index("--out") + 1] == str(run)
    assert all(str(run / "model_best.pth.tar") in a for a in argvs[2:9])
    explain = argvs[4]  # the checks of the maps, on a small subset: the tour's budget
    assert {"--sanity", "--faithfulness"} <= set(explain) and int(explain[explain.index("--subset") + 1]) <= 100
    native, custom = argvs[9], argvs[10]
    assert native[native.index("--out") + 1] == str(run / "conv" / "native")
    assert custom[custom.index("--out") + 1] == str(run / "conv" / "custom")
    assert custom[: custom.index("--out")] == [*native[: native.index("--out")], "--use-custom-conv"]
    stages = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert stages == ["fetch", "train", "eval", "saliency", "explain", "attack", "robustness", "corruptions", "certify",
                      "conv", "report",
                      "total"]  # fmt: skip
    assert f"report: {run}/report.html" in out


def test_the_demo_commands_give_a_report_with_every_section_filled(
    recorded: tuple[Path, list[list[str]], str], tmp_path: Path
) -> None:
    """Every command after the fetch, run as the demo runs it but on a tiny Fashion-MNIST-format dataset (the only
    change: ``--data fashion-mnist`` names its folder) and into a fresh run directory: no section of the page is
    "Not available"."""
    old_run, argvs, _ = recorded
    run = tmp_path / "run"
    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', n_train=64, n_test=24)}"
    for argv in argvs[1:]:
        argv = [a.replace(str(old_run), str(run)) for a in argv]
        argv = [
            data if (flag, a) == ("--data", "fashion-mnist") else a
            for flag, a in zip(["", *argv[:-1]], argv, strict=True)
        ]
        assert main(argv) == 0, argv
    page = (run / "report.html").read_text(encoding="utf-8")
    found = re.findall(r'<section id="([\w-]+)"', page)
    assert found == [section_id for section_id, _ in SECTIONS]
    assert "Not available" not in page
    assert "Sanity check (explain/explain.json)" in page and "Faithfulness (explain/explain.json)" in page


def test_a_failing_stage_stops_the_demo(tmp_path: Path) -> None:
    fake = tmp_path / "visionlab"
    fake.write_text('#!/usr/bin/env bash\n[ "$1" = train ] && exit 2\nexit 0\n')
    fake.chmod(0o755)
    proc = subprocess.run([str(SCRIPT), str(fake), str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "report:" not in proc.stdout
