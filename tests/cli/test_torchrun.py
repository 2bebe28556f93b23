"""The user's commands under ``torchrun``: ``-m visionlab train`` and ``main.py -e`` as 2 gloo processes on the CPU,
and the launch failing with the commands' exit status when they fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from visionlab.cli import main as cli_main

from ..conftest import make_fashion_mnist

REPO = Path(__file__).resolve().parents[2]


def _torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_train_and_evaluate_under_torchrun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fmnist', n_train=64, n_test=11)}"
    run = tmp_path / "run"
    # 15 training images, no more than one global batch: one step, on 7 + 7 of them
    train = _torchrun("-m", "visionlab", "train", "--data", spec, "--limit-train", "15", "--epochs", "1", "-b", "16",
                      "--lr", "0.05", "--out", str(run), "--no-tensorboard", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert train.stdout.count("* Acc@1") == 1  # rank 0 reports, once
    assert "2 processes (cpu, DDP, global batch 16)" in train.stderr
    assert (run / "model_best.pth.tar").is_file() and (run / "curves.png").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "epoch"] == [1]

    best = str(run / "model_best.pth.tar")
    evaluated = _torchrun(str(REPO / "main.py"), spec, "--resume", best, "-e", "-b", "4", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    lines = [line for line in evaluated.stdout.splitlines() if line.startswith("* Acc@1")]
    assert len(lines) == 1
    assert cli_main(["eval", "--resume", best, "--data", spec, "-b", "4", "--json", "--no-progress"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert lines[0] == f"* Acc@1 {single['top1']:.3f} Acc@5 {single['top5']:.3f}"  # 11 images split 6 + 5

    attack = ["--resume", best, "--data", spec, "--eps", "0.1", "--steps", "3", "-b", "4", "--json", "--no-progress"]
    sharded = _torchrun("-m", "visionlab", "attack", *attack, "--out", str(tmp_path / "a2"), cwd=tmp_path)
    assert sharded.returncode == 0, sharded.stderr
    assert cli_main(["attack", *attack, "--out", str(tmp_path / "a1")]) == 0
    one, two = json.loads(capsys.readouterr().out), json.loads(sharded.stdout)
    assert two["n"] == one["n"] == 11
    for key in ("clean_top1", "clean_top5", "robust_top1", "robust_top5"):  # exact counts summed over ranks
        assert two[key] == one[key], key


# What torchrun runs for each front end, ahead of its flags.
FRONT_ENDS = {"visionlab": ["-m", "visionlab", "eval", "--data", "fashion-mnist"],
              "main.py": [str(REPO / "main.py"), "fashion-mnist", "-e"]}  # fmt: skip


@pytest.mark.parametrize("prog", FRONT_ENDS)
def test_a_failing_command_fails_the_launch_with_its_exit_status(prog: str, tmp_path: Path) -> None:
    """One process (each costs a ~3 s import): whether a failing process fails the launch does not depend on how
    many there are."""
    missing = tmp_path / "missing.pth.tar"
    launch = _torchrun(*FRONT_ENDS[prog], "--resume", str(missing), cwd=tmp_path, nproc=1)
    assert launch.returncode == 1  # torchrun's status when a process fails
    assert f"{prog}: error: {missing}: checkpoint not found" in launch.stderr.splitlines()
    root_cause = launch.stderr.split("Root Cause")[-1]
    assert re.search(r"exitcode\s*:\s*2 ", root_cause), launch.stderr  # the process's own status: a user error
