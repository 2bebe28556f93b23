"""``make demo``'s script: the stages in order, each a valid visionlab command line, a table of stage times and
the report's path (a stand-in ``visionlab`` records the calls; the real commands are tested elsewhere)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from visionlab.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def test_demo_runs_the_tour_in_order_with_valid_commands(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "visionlab"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {calls}\necho >> {calls}\n')
    fake.chmod(0o755)
    run = tmp_path / "run"
    out = subprocess.run([str(SCRIPT), str(fake), str(run)], capture_output=True, text=True, check=True).stdout
    argvs = [shlex.split(line) for line in calls.read_text().splitlines()]
    assert [a[0] for a in argvs] == ["data", "train", "eval", "saliency", "attack", "report"]
    parser = build_parser()
    for argv in argvs:
        parser.parse_args(argv)  # every flag exists (argparse exits on an unknown one)
    assert argvs[1][argvs[1].index("--out") + 1] == str(run)
    assert all(str(run / "model_best.pth.tar") in a for a in argvs[2:5])
    stages = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert stages == ["fetch", "train", "eval", "saliency", "attack", "report", "total"]
    assert f"report: {run}/report.html" in out


def test_a_failing_stage_stops_the_demo(tmp_path: Path) -> None:
    fake = tmp_path / "visionlab"
    fake.write_text('#!/usr/bin/env bash\n[ "$1" = train ] && exit 2\nexit 0\n')
    fake.chmod(0o755)
    proc = subprocess.run([str(SCRIPT), str(fake), str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "report:" not in proc.stdout
