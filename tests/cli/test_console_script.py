"""The installed ``visionlab`` console script (``[project.scripts]``), run as a user runs it: its exit status is the
command's (what shells and CI read). ``python -m visionlab`` and ``main.py`` are run under torchrun in
``test_torchrun.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_console_script_exits_with_the_commands_status(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("visionlab")
    if not script.is_file():
        pytest.skip(f"no visionlab console script beside {sys.executable} (install the package: pip install -e .)")
    missing = tmp_path / "missing.pth.tar"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [str(script), "eval", "--resume", str(missing), "--data", "fashion-mnist"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"visionlab: error: {missing}: checkpoint not found\n"
