"""The distribution of every statistical test's asserted quantities over seeds, thread counts and CPU kernels.

A statistical test (``@pytest.mark.statistical``, tests/statistical.py) asserts on the outcome of training or of a
random draw. This runs all of them once per seed under each of four settings -- {1, 2} intra-op threads x
{default, AVX2} kernels of PyTorch and MKL -- each in a fresh pytest process, and prints for every checked quantity
its bound, its range per setting, its mean and spread over everything, the worst value's distance from the bound
in spreads, and how many runs broke it. Last, one JSON line with the same per quantity.

    .venv/bin/python bench/statistical_tests.py [--seeds 0-19] [-k EXPR] [--settings 1:default,2:avx2] [--out DIR]

A threshold is sound when no run breaks it and its worst value sits several spreads from the bound (docs/TESTING.md,
"Statistical tests"). Takes ~25 minutes on an idle 2-core machine for 20 seeds.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = {"default": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


def run_setting(threads: int, kernels: str, seeds: str, select: str | None, out: Path) -> int:
    """One pytest process of every statistical test at every seed, its output in ``out``'s ``.log`` beside it;
    prints the tests that failed (under --stat-out a check records instead of asserting, so a failure is another
    assertion) and returns pytest's status."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **KERNELS[kernels]}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-m", "statistical",
               "--stat-seeds", seeds, "--stat-out", str(out), *(["-k", select] if select else [])]  # fmt: skip
    print(f"== {threads} thread(s), {kernels} kernels: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    for line in out.with_suffix(".log").read_text(encoding="utf-8").splitlines():
        if line.startswith(("FAILED", "ERROR")):  # an assertion outside stat.check broke at some seed
            print(f"   {line}", file=sys.stderr)
    return status.returncode


def summarize(records: list[dict]) -> list[dict]:
    """One row per (test, quantity, op, bound): ranges per setting, mean, spread, worst margin, breaks."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in records:
        groups[(r["test"], r["name"], r["op"], r["bound"])].append(r)
    rows = []
    for (test, name, op, bound), rs in groups.items():
        values = [r["value"] for r in rs]
        per_setting: dict[str, list[float]] = collections.defaultdict(list)
        for r in rs:
            per_setting[f"{r['threads']}t/{r['kernels']}"].append(r["value"])
        worst = min(values) if op in (">", ">=") else max(values)
        spread = statistics.pstdev(values)
        margin = abs(worst - bound) / spread if spread > 0 else float("inf")
        rows.append({
            "test": test, "quantity": name, "op": op, "bound": bound, "runs": len(values),
            "seeds": len({r["seed"] for r in rs}), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values), "sd": spread, "worst_margin_sd": margin,
            "broken": sum(not r["holds"] for r in rs),
            "per_setting": {k: [min(v), max(v)] for k, v in sorted(per_setting.items())},
        })  # fmt: skip
    return sorted(rows, key=lambda row: (row["test"], row["quantity"], row["op"]))


def print_table(rows: list[dict]) -> None:
    for row in rows:
        print(
            f"{row['test']}\n  {row['quantity']} {row['op']} {row['bound']:g}: runs {row['runs']} "
            f"({row['seeds']} seeds), range [{row['min']:.6g}, {row['max']:.6g}], mean {row['mean']:.6g}, "
            f"sd {row['sd']:.3g}, worst {row['worst_margin_sd']:.1f} sd from the bound, broken {row['broken']}"
        )
        for setting, (lo, hi) in row["per_setting"].items():
            print(f"    {setting:>12}: [{lo:.6g}, {hi:.6g}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-19", help="seed range or list (default 0-19)")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression: only these tests")
    parser.add_argument("--settings", default="1:default,2:default,1:avx2,2:avx2",
                        help="threads:kernels pairs (kernels: default or avx2)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="keep the raw JSON lines here (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="settings run at once (the values do not depend on it; only the time does)")  # fmt: skip
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="statistical-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = [(int(t), k) for t, k in (s.split(":") for s in args.settings.split(","))]
    outs = [out_dir / f"{t}t-{k}.jsonl" for t, k in settings]
    for out in outs:
        out.unlink(missing_ok=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        statuses = list(pool.map(lambda s, o: run_setting(*s, args.seeds, args.select, o), settings, outs))
    for (threads, kernels), status in zip(settings, statuses, strict=True):
        if status not in (0, 1):
            sys.exit(f"pytest exited {status} under {threads} thread(s), {kernels} kernels")
    records = [json.loads(line) for out in outs for line in out.read_text(encoding="utf-8").splitlines()]
    rows = summarize(records)
    print_table(rows)
    print(
        json.dumps(
            {
                f"{r['test']} :: {r['quantity']} {r['op']} {r['bound']:g}": {
                    k: r[k] for k in ("min", "max", "sd", "worst_margin_sd", "broken", "runs")
                }
                for r in rows
            }
        )
    )


if __name__ == "__main__":
    main()
