"""Adversarial-training recipe search on Fashion-MNIST (L∞ ε = 0.1): several recipes trained side by side, each
evaluated with PGD-20 (step 0.01, 5 restarts) and the best ones with AutoAttack.

Made for a GPU (one process per recipe, all at once); on a CPU run one recipe at a time (``--only NAME``). The
recipes' accuracies carry over to the CPU (same algorithm, same data); their times do not. The chosen recipe is
then trained and timed on the CPU with ``visionlab train`` (BENCHMARKS.md).

    python bench/at_search.py --out runs/at-search --device cuda             # every recipe, in parallel
    python bench/at_search.py --out runs/at-search --only fgsm10 --device cpu

Writes ``RUN/<name>/`` (a visionlab run) and ``RUN/<name>.json`` (recipe, train minutes, PGD-20 and AutoAttack
results); prints one JSON line per recipe and, last, ``{"best": name, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# name -> TrainConfig fields beyond the shared ones below.
RECIPES: dict[str, dict] = {
    "fgsm10": {"adv_train": "fgsm-rs", "epochs": 10},  # the CPU run in BENCHMARKS.md, for calibration
    "fgsm15": {"adv_train": "fgsm-rs", "epochs": 15},
    "fgsm25": {"adv_train": "fgsm-rs", "epochs": 25},
    "fgsm15-step1": {"adv_train": "fgsm-rs", "epochs": 15, "adv_step": 0.1},
    "fgsm15-small": {"adv_train": "fgsm-rs", "epochs": 15, "model_kwargs": {"widths": [16, 32, 64]}},
    "fgsm15-wide": {"adv_train": "fgsm-rs", "epochs": 15, "model_kwargs": {"widths": [64, 128, 256]}},
    "fgsm15-ls": {"adv_train": "fgsm-rs", "epochs": 15, "label_smoothing": 0.1},
    "fgsm15-lr05": {"adv_train": "fgsm-rs", "epochs": 15, "lr": 0.05},
    "pgd2-10": {"adv_train": "pgd", "adv_steps": 2, "epochs": 10},
    "pgd3-8": {"adv_train": "pgd", "adv_steps": 3, "epochs": 8},
    "pgd3-20": {"adv_train": "pgd", "adv_steps": 3, "epochs": 20},
    "trades3-8": {"adv_train": "trades", "adv_steps": 3, "trades_beta": 6.0, "epochs": 8},
    "trades2-12": {"adv_train": "trades", "adv_steps": 2, "trades_beta": 6.0, "epochs": 12},
    "fgsm8": {"adv_train": "fgsm-rs", "epochs": 8},
    "pgd2-8": {"adv_train": "pgd", "adv_steps": 2, "epochs": 8},
    "simplenet-fgsm15": {"adv_train": "fgsm-rs", "epochs": 15, "model": "simplenet"},
}
SHARED = {
    "data": "fashion-mnist", "model": "improved", "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
    "momentum": 0.9, "weight_decay": 5e-4, "warmup": 1.0, "clip_grad": 0.0, "adv_eps": 0.1, "select_by": "robust",
    "robust_val": 1000, "workers": int(os.environ.get("AT_SEARCH_WORKERS", 1)),
    "deterministic": False, "progress": False, "tensorboard": False,
    "print_freq": 10**6,
}  # fmt: skip


SMOKE = {"epochs": 1, "limit_train": 256, "limit_val": 128, "robust_val": 32}


def train_one(name: str, out: Path, device: str, smoke: bool) -> None:
    """Train recipe ``name`` into ``out/name`` (this process)."""
    from visionlab.engine import TrainConfig, Trainer

    fields = {**SHARED, **RECIPES[name], "out": str(out / name), "device": device, **(SMOKE if smoke else {})}
    cfg = TrainConfig(**fields).validate()
    start = time.perf_counter()
    result = Trainer(cfg).fit()
    minutes = (time.perf_counter() - start) / 60
    (out / f"{name}.train.json").write_text(json.dumps({"minutes": minutes, "best_top1": result["best_top1"]}))


def training_record(name: str, out: Path) -> dict:
    """What a (finished or stopped) training left: minutes, and per epoch (val top-1, val PGD-10 top-1)."""
    metrics = out / name / "metrics.jsonl"
    epochs = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    curve = [(e["val_top1"], e.get("val_robust_top1")) for e in epochs if e.get("type") == "epoch"]
    done = out / f"{name}.train.json"
    minutes = json.loads(done.read_text())["minutes"] if done.exists() else None
    return {"name": name, "recipe": RECIPES[name], "finished": done.exists(), "minutes": minutes, "curve": curve}


def attack(ckpt: Path, device: str, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "visionlab", "attack", "--resume", str(ckpt), "--device", device, "--json",
           "--no-progress", *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(record: dict, summary: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if summary is not None:
        with summary.open("a") as f:
            f.write(line + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--pgd-n", type=int, default=2000, help="test images for PGD-20 (default 2000)")
    ap.add_argument("--aa-n", type=int, default=1000, help="test images for AutoAttack (default 1000)")
    ap.add_argument("--aa-top", type=int, default=3, help="AutoAttack the best N recipes by PGD-20")
    ap.add_argument("--train-minutes", type=float, default=10**6, help="stop trainings still running after this")
    ap.add_argument("--summary", type=Path, help="also append each JSON line to this file")
    ap.add_argument("--smoke", action="store_true", help="1 epoch on 256 images: checks the script runs")
    ap.add_argument("--train-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_one:
        return train_one(args.train_one, args.out, args.device, args.smoke)
    if args.smoke:
        args.pgd_n, args.aa_n = 32, 16
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--out", str(args.out), "--device", args.device, "--train-one", name]
            + ["--smoke"] * args.smoke,
            stdout=open(args.out / f"{name}.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for name in args.only
    }  # fmt: skip
    deadline = time.monotonic() + 60 * args.train_minutes
    for proc in procs.values():  # a recipe still training at the deadline is stopped; its model_best is kept
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    results = {name: training_record(name, args.out) for name in procs}
    for name, res in list(results.items()):
        if not (args.out / name / "model_best.pth.tar").exists():
            report({**res, "error": (args.out / f"{name}.log").read_text()[-1500:]}, args.summary)
            del results[name]
    pgd_args = ["--attack", "pgd", "--steps", "20", "--step", "0.01", "--restarts", "5", "--eps", "0.1",
                "--limit-val", str(args.pgd_n)]  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        pgds = pool.map(lambda n: attack(args.out / n / "model_best.pth.tar", args.device, *pgd_args), list(results))
        for name, pgd in zip(list(results), pgds, strict=True):
            results[name]["pgd20"] = pgd
            report(results[name], args.summary)
    ranked = sorted(results, key=lambda n: results[n]["pgd20"].get("robust_top1", -1), reverse=True)
    top = ranked[: args.aa_top]
    with ThreadPoolExecutor(max(1, len(top))) as pool:  # one attack process per model, side by side
        aas = pool.map(lambda n: attack(args.out / n / "model_best.pth.tar", args.device, "--attack", "autoattack",
                                        "--eps", "0.1", "--limit-val", str(args.aa_n)), top)  # fmt: skip
        for name, aa in zip(top, aas, strict=True):
            results[name]["autoattack"] = aa
            report({"name": name, "autoattack": aa}, args.summary)
    for name, res in results.items():
        (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({"best": ranked[0] if ranked else None, "ranked": ranked}))


if __name__ == "__main__":
    main()
