"""Statistical tests: assertions on the outcome of training or of a random draw, measured before they are trusted.

Such an assertion holds only for the seed, the thread count and the CPU kernels it was tried with, unless its
threshold sits far from every outcome those can produce: a tiny model's accuracy after a few epochs moves by whole
images when another CPU rounds a sum differently (``make test`` failed twice that way on users' machines). So a
test of this kind

- is marked ``@pytest.mark.statistical(seed=S)`` and takes the fixtures ``stat_seed`` (``S`` in a normal run) and
  ``stat``; everything random in it is drawn from ``stat_seed``;
- states each asserted quantity through ``stat.check(name, value, op, bound)``, which asserts it, and beside the
  call a comment gives the range ``bench/statistical_tests.py`` measured (>= 20 seeds x {1, 2} threads x {default,
  AVX2} kernels) and the margin in spreads.

``pytest -m statistical --stat-seeds 0-19 --stat-out FILE`` runs every such test once per seed and writes each
checked quantity as a JSON line instead of failing on it; ``bench/statistical_tests.py`` runs that under every
thread count and kernel and prints the distributions. The rule is written down in docs/TESTING.md.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def parse_seeds(spec: str) -> list[int]:
    """``"0-19"`` -> 0..19, ``"3,5,8"`` -> [3, 5, 8] (ranges and lists may mix: ``"0-4,9"``)."""
    seeds: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    if not seeds:
        raise pytest.UsageError(f"--stat-seeds: no seed in {spec!r}")
    return seeds


class Statistic:
    """The ``stat`` fixture: checks one test's statistical quantities, or records them (``--stat-out``)."""

    def __init__(self, test: str, seed: int, out: Path | None) -> None:
        self.test, self.seed, self.out = test, seed, out

    def check(self, name: str, value: float, op: str, bound: float) -> None:
        """Assert ``value op bound`` (``op`` one of ``< <= > >=``); under ``--stat-out`` write it down instead, so
        that one seed's failure does not hide the test's other quantities."""
        value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        holds = OPS[op](value, bound)
        if self.out is None:
            assert holds, f"{self.test}: {name} = {value!r}, expected {op} {bound!r} (seed {self.seed})"
            return
        record = {"test": self.test, "name": name, "seed": self.seed, "value": value, "op": op, "bound": bound,
                  "holds": holds, "threads": torch.get_num_threads(),
                  "kernels": torch.backends.cpu.get_cpu_capability()}  # fmt: skip
        with open(self.out, "a", encoding="utf-8") as f:  # one line per write: safe beside other processes
            f.write(json.dumps(record) + "\n")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("statistical tests (tests/statistical.py)")
    group.addoption("--stat-seeds", default=None, metavar="SPEC",
                    help="run each statistical test once per seed (e.g. 0-19), not with its own seed")  # fmt: skip
    group.addoption("--stat-out", default=None, metavar="FILE",
                    help="append every checked quantity to FILE as JSON lines instead of asserting it")  # fmt: skip


def parametrize(metafunc: pytest.Metafunc) -> None:
    """Give ``stat_seed`` the test's own seed, or every seed of ``--stat-seeds``."""
    if "stat_seed" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("statistical")
    if marker is None or "seed" not in marker.kwargs:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: stat_seed needs @pytest.mark.statistical(seed=S)")
    spec = metafunc.config.getoption("stat_seeds")
    seeds = parse_seeds(spec) if spec else [marker.kwargs["seed"]]
    metafunc.parametrize("stat_seed", seeds, ids=[f"seed{s}" for s in seeds])


def fixture(request: pytest.FixtureRequest, stat_seed: int) -> Statistic:
    out = request.config.getoption("stat_out")
    test = request.node.nodeid.split("[")[0]
    params = getattr(request.node, "callspec", None)
    others = {k: v for k, v in params.params.items() if k != "stat_seed"} if params else {}
    if others:  # other parameters name the case: test[norm=l2]
        test += "[" + ",".join(f"{k}={v}" for k, v in others.items()) + "]"
    return Statistic(test, stat_seed, Path(os.path.abspath(out)) if out else None)
