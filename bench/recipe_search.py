"""Recipe search on Fashion-MNIST: many training recipes side by side (one process each, made for a GPU), then
each evaluated: adversarially trained ones (suite ``at``, L∞ ε = 0.1) with PGD-20 (step 0.01, 5 restarts) and the
best with AutoAttack; clean ones (suite ``clean``, issue 10's ImprovedNet) by their test top-1 after the last epoch.
Runs with a weight EMA (``ema``) are evaluated twice: the trained weights (``model_best``) and the average
(``model_ema``).

On a CPU run one recipe at a time (``--only NAME``). The recipes' accuracies carry over to the CPU (same
algorithm, same data); their times do not: the chosen recipe is then trained and timed on the CPU with
``visionlab train`` (BENCHMARKS.md).

    python bench/recipe_search.py --out runs/search --device cuda --train-minutes 6          # every recipe
    python bench/recipe_search.py --out runs/search --device cuda --suite clean
    python bench/recipe_search.py --out runs/search --only at-fgsm10 --device cpu

Writes ``OUT/<name>/`` (a visionlab run) and ``OUT/<name>.json`` (recipe, train minutes, curve, evaluations);
prints one JSON line per recipe and, last, ``{"best": {suite: name}, ...}``.
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

# Suite "at": adversarial training (issue 9). The first block is the first GPU search (BENCHMARKS.md), kept so its
# rows can be rerun; the second adds a weight EMA, a smaller step size, and the five-stage network of the clean
# recipe (2x the training images/s of the three-stage build on a CPU, so twice the epochs fit in the time).
FIVE_STAGE = {"widths": [16, 32, 64, 128, 256], "depths": [1, 1, 1, 1, 1]}
WIDE_24 = {"widths": [24, 48, 96, 192, 384], "depths": [1, 1, 1, 1, 1]}  # 1.5x the width: ~2.25x the multiply-adds
WIDE_32 = {"widths": [32, 64, 128, 256, 512], "depths": [1, 1, 1, 1, 1]}
AT: dict[str, dict] = {
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
    # second search: weight EMA, step size, the five-stage network
    "fgsm10-ema": {"adv_train": "fgsm-rs", "epochs": 10, "ema": 0.999},
    "fgsm10-ema-s1": {"adv_train": "fgsm-rs", "epochs": 10, "ema": 0.999, "seed": 1},
    "fgsm10-ema-lr05-clip": {"adv_train": "fgsm-rs", "epochs": 10, "ema": 0.999, "lr": 0.05, "clip_grad": 1.0},
    "pgd3-8-ema": {"adv_train": "pgd", "adv_steps": 3, "epochs": 8, "ema": 0.999},
    "trades3-8-ema": {"adv_train": "trades", "adv_steps": 3, "trades_beta": 6.0, "epochs": 8, "ema": 0.999},
    "five-fgsm15-ema": {"adv_train": "fgsm-rs", "epochs": 15, "ema": 0.999, "model_kwargs": FIVE_STAGE},
    "five-pgd3-10-ema": {"adv_train": "pgd", "adv_steps": 3, "epochs": 10, "ema": 0.999, "model_kwargs": FIVE_STAGE},
    "five-fgsm15-adamw-ema": {
        "adv_train": "fgsm-rs",
        "epochs": 15,
        "ema": 0.999,
        "model_kwargs": FIVE_STAGE,
        "optimizer": "adamw",
        "lr": 5e-3,
        "weight_decay": 0.05,
        "warmup": 0.5,
    },
    # third search: N-FGSM (noise 2 eps, step eps, no projection; de Jorge et al. 2022), more epochs, a wider net
    "five-nfgsm15-ema": {"adv_train": "n-fgsm", "epochs": 15, "ema": 0.999, "model_kwargs": FIVE_STAGE},
    "five-nfgsm20-ema": {"adv_train": "n-fgsm", "epochs": 20, "ema": 0.999, "model_kwargs": FIVE_STAGE},
    "w24-nfgsm12-ema": {"adv_train": "n-fgsm", "epochs": 12, "ema": 0.999, "model_kwargs": WIDE_24},
    "w24-fgsm10-ema": {"adv_train": "fgsm-rs", "epochs": 10, "ema": 0.999, "model_kwargs": WIDE_24},
    "w24-nfgsm15-ema": {"adv_train": "n-fgsm", "epochs": 15, "ema": 0.999, "model_kwargs": WIDE_24},
    # fourth search: more capacity (4x the five-stage multiply-adds), a larger training radius (evaluated at 0.1),
    # multi-step and TRADES objectives on the wider net
    "w32-fgsm10-ema": {"adv_train": "fgsm-rs", "epochs": 10, "ema": 0.999, "model_kwargs": WIDE_32},
    "w32-fgsm15-ema": {"adv_train": "fgsm-rs", "epochs": 15, "ema": 0.999, "model_kwargs": WIDE_32},
    "w24-fgsm10-eps12-ema": {
        "adv_train": "fgsm-rs",
        "epochs": 10,
        "ema": 0.999,
        "adv_eps": 0.12,
        "model_kwargs": WIDE_24,
    },
    "five-fgsm10-eps12-ema": {
        "adv_train": "fgsm-rs",
        "epochs": 10,
        "ema": 0.999,
        "adv_eps": 0.12,
        "model_kwargs": FIVE_STAGE,
    },
    "w24-pgd3-10-ema": {"adv_train": "pgd", "adv_steps": 3, "epochs": 10, "ema": 0.999, "model_kwargs": WIDE_24},
    "w24-trades3-10-ema": {
        "adv_train": "trades",
        "adv_steps": 3,
        "trades_beta": 6.0,
        "epochs": 10,
        "ema": 0.999,
        "model_kwargs": WIDE_24,
    },
}
AT_SHARED = {
    "data": "fashion-mnist", "model": "improved", "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
    "momentum": 0.9, "weight_decay": 5e-4, "warmup": 1.0, "clip_grad": 0.0, "adv_eps": 0.1, "select_by": "robust",
    "robust_val": 1000, "workers": int(os.environ.get("AT_SEARCH_WORKERS", 1)),
}  # fmt: skip
# Suite "clean": ImprovedNet's Fashion-MNIST recipe (recipes.py: five stages, AdamW, 10 epochs) and what might
# take it from 94.2% to 95%: a weight EMA, more epochs with crop + erasing, depth.
AUG = "flip,crop=2,erase=0.25"
CLEAN: dict[str, dict] = {
    "c10-ema": {"ema": 0.999},
    "c10-ema-s1": {"ema": 0.999, "seed": 1},
    "c15-ema": {"epochs": 15, "ema": 0.999},
    "c15-aug-ema": {"epochs": 15, "augment": AUG, "ema": 0.999},
    "c20-aug-ema": {"epochs": 20, "augment": AUG, "ema": 0.999},
    "c12-deep-ema": {
        "epochs": 12,
        "ema": 0.999,
        "model_kwargs": {"widths": FIVE_STAGE["widths"], "depths": [1, 1, 2, 2, 1]},
    },
    # third search: capacity (the five-stage net saturates at 94.2-94.4% whatever the schedule)
    "c10-w24-ema": {"ema": 0.999, "model_kwargs": WIDE_24},
    "c15-w24-ema": {"epochs": 15, "ema": 0.999, "model_kwargs": WIDE_24},
    "c12-w24-aug-ema": {"epochs": 12, "augment": AUG, "ema": 0.999, "model_kwargs": WIDE_24},
    "c10-w32-ema": {"ema": 0.999, "model_kwargs": WIDE_32},
    # fourth search: the widest net, twice the schedule with crop + erasing (what 95% would cost)
    "c20-w32-aug-ema": {"epochs": 20, "augment": AUG, "ema": 0.999, "model_kwargs": WIDE_32},
}
CLEAN_SHARED = {"data": "fashion-mnist", "model": "improved"}  # + recipe_for("improved", "fashion-mnist")
RUNTIME = {"deterministic": False, "progress": False, "tensorboard": False, "print_freq": 10**6}
RECIPES: dict[str, tuple[str, dict]] = {
    **{n: ("at", r) for n, r in AT.items()},
    **{n: ("clean", r) for n, r in CLEAN.items()},
}
# What a bare invocation runs: the AT recipes with a weight EMA (second and third searches) and the clean suite.
DEFAULT = [n for n in AT if "ema" in AT[n]] + list(CLEAN)


SMOKE = {"epochs": 1, "limit_train": 256, "limit_val": 128, "robust_val": 32}
CURVE_KEYS = ("val_top1", "val_robust_top1", "val_ema_top1", "val_ema_robust_top1")


def fields_of(name: str) -> dict:
    """The TrainConfig fields of recipe ``name`` (its suite's shared settings, then its own)."""
    from visionlab.recipes import recipe_for

    suite, own = RECIPES[name]
    shared = AT_SHARED if suite == "at" else {**CLEAN_SHARED, **recipe_for("improved", "fashion-mnist")}
    return {**shared, **RUNTIME, **own}


def train_one(name: str, out: Path, device: str, smoke: bool) -> None:
    """Train recipe ``name`` into ``out/name`` (this process)."""
    from visionlab.engine import TrainConfig, Trainer

    fields = {**fields_of(name), "out": str(out / name), "device": device, **(SMOKE if smoke else {})}
    cfg = TrainConfig(**fields).validate()
    start = time.perf_counter()
    result = Trainer(cfg, callbacks=[]).fit()
    minutes = (time.perf_counter() - start) / 60
    (out / f"{name}.train.json").write_text(json.dumps({"minutes": minutes, "best_top1": result["best_top1"]}))


def training_record(name: str, out: Path) -> dict:
    """What a (finished or stopped) training left: minutes, and per epoch its validation figures (clean top-1,
    PGD-10 top-1 on the monitor's subset, and the same for the EMA; None where the run has none)."""
    metrics = out / name / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    epochs = [e for e in map(json.loads, lines) if e.get("type") == "epoch"]
    curve = [[e.get(k) for k in CURVE_KEYS] for e in epochs]
    done = out / f"{name}.train.json"
    minutes = json.loads(done.read_text())["minutes"] if done.exists() else None
    suite, recipe = RECIPES[name]
    return {"name": name, "suite": suite, "recipe": recipe, "finished": done.exists(), "minutes": minutes,
            "epochs_done": len(epochs), "curve_keys": CURVE_KEYS, "curve": curve}  # fmt: skip


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


def launch(names: list[str], args: argparse.Namespace) -> None:
    """Train every recipe in its own process (one thread each); stop those still running at the deadline (their
    last completed epoch's checkpoints are kept)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--out", str(args.out), "--device", args.device, "--train-one", name]
            + ["--smoke"] * args.smoke,
            stdout=open(args.out / f"{name}.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for name in names
    }  # fmt: skip
    deadline = time.monotonic() + 60 * args.train_minutes
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def checkpoints(name: str, out: Path) -> dict[str, Path]:
    """``{"best": model_best, "ema": model_ema}`` of a run, those that exist."""
    files = {"best": out / name / "model_best.pth.tar", "ema": out / name / "model_ema.pth.tar"}
    return {kind: path for kind, path in files.items() if path.exists()}


def evaluate_at(results: dict[str, dict], args: argparse.Namespace) -> list[tuple[str, str]]:
    """PGD-20 (5 restarts) on every checkpoint of the adversarial runs, then AutoAttack on the best
    ``--aa-top``; returns the ``(name, kind)`` ranking by PGD-20 top-1."""
    pgd_args = ["--attack", "pgd", "--steps", "20", "--step", "0.01", "--restarts", "5", "--eps", "0.1",
                "--limit-val", str(args.pgd_n)]  # fmt: skip
    jobs = [(n, kind, ckpt) for n in results for kind, ckpt in checkpoints(n, args.out).items()]
    with ThreadPoolExecutor(args.eval_jobs) as pool:
        pgds = list(pool.map(lambda job: attack(job[2], args.device, *pgd_args), jobs))
    for (name, kind, _), pgd in zip(jobs, pgds, strict=True):
        results[name][f"pgd20_{kind}"] = pgd
        report({"name": name, "checkpoint": kind, "pgd20": pgd}, args.summary)  # kept even if AutoAttack is cut off
    ranked = sorted(((n, k) for n, k, _ in jobs), key=lambda j: results[j[0]][f"pgd20_{j[1]}"].get("robust_top1", -1),
                    reverse=True)  # fmt: skip
    top = ranked[: args.aa_top]
    aa_args = ["--attack", "autoattack", "--eps", "0.1", "--limit-val", str(args.aa_n)]
    with ThreadPoolExecutor(max(1, len(top))) as pool:  # one attack process per model, side by side
        aas = list(pool.map(lambda j: attack(checkpoints(j[0], args.out)[j[1]], args.device, *aa_args), top))
    for (name, kind), aa in zip(top, aas, strict=True):
        results[name][f"autoattack_{kind}"] = aa
        report({"name": name, "checkpoint": kind, "autoattack": aa}, args.summary)
    return ranked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--only", nargs="*", choices=list(RECIPES), help="recipes to run (default: " + " ".join(DEFAULT) + ")"
    )
    ap.add_argument("--suite", choices=["at", "clean"], help="only this suite's recipes (of --only or the default)")
    ap.add_argument("--pgd-n", type=int, default=2000, help="test images for PGD-20 (default 2000)")
    ap.add_argument("--aa-n", type=int, default=1000, help="test images for AutoAttack (default 1000)")
    ap.add_argument("--aa-top", type=int, default=3, help="AutoAttack the best N checkpoints by PGD-20")
    ap.add_argument("--eval-jobs", type=int, default=4, help="PGD evaluations side by side (default 4)")
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
    names = [n for n in (args.only or DEFAULT) if args.suite in (None, RECIPES[n][0])]
    launch(names, args)
    results = {name: training_record(name, args.out) for name in names}
    for name in list(results):
        if not checkpoints(name, args.out):
            report({**results.pop(name), "error": (args.out / f"{name}.log").read_text()[-1500:]}, args.summary)
        else:  # the curves first: kept even if the evaluations below are cut off
            report({**results[name], "stage": "trained"}, args.summary)
    adversarial = {n: r for n, r in results.items() if r["suite"] == "at"}
    best = {}
    if adversarial:
        ranked = evaluate_at(adversarial, args)
        best["at"] = ranked[0] if ranked else None
    clean = [n for n, r in results.items() if r["suite"] == "clean"]
    if clean:  # the last epoch's test top-1, the trained weights or the EMA, whichever is higher
        best["clean"] = max(clean, key=lambda n: max(v or 0 for v in results[n]["curve"][-1]))
    for name, res in results.items():
        (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res), flush=True)
    print(json.dumps({"best": best}))


if __name__ == "__main__":
    main()
