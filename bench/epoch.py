"""Epochs of the synthetic MiniPlaces as whole commands: where the time goes for each model and input option.

Each run is one ``visionlab train --data miniplaces:ROOT --model M --epochs E`` process (start-up, the image
check, data loading, training steps, validation, checkpoints), on the synthetic MiniPlaces of
:mod:`visionlab.data.synth` (made in ``--root`` first, or reused when an earlier run made it with the same
settings). Models (the course's configurations at 128 px: the registry's defaults and recipes, batch 256; ResNet-18
from scratch, as ``--pretrained imagenet`` needs the hub download, same compute): ``simplenet``, ``resnet18``,
``vit``, and ``simplenet-pgd3`` (3-step PGD adversarial training). On CUDA every run adds ``--amp
--channels-last``. Input options are plain flag strings (:data:`OPTIONS`): CPU workers 0/4/8/15, the decoded
set cached (``--cache-images``, with 0 or 8 workers), and the GPU-side options (``--gpu-augment``, alone and
with the cache); options that need CUDA, or more CPUs than this machine has, are skipped with the reason
printed, and a run that fails (a flag this checkout lacks) is reported as failed with its last line.

Per run, from the run directory's ``metrics.jsonl`` epoch records (the mean over the epochs after the first
when there are two or more: the first holds the start-up of workers and kernels): the epoch's seconds (training
+ validation + checkpoint), ``train_seconds`` and ``data_wait_seconds`` (the training loop and its wait for
batches: :class:`visionlab.runtime.WaitTimer`); so train images/s, epoch images/s (training images per second of
the whole epoch), the data-wait share, and the compute rate (training images per second of the loop's time not
spent waiting). The whole command's wall time too. On CUDA, the GPU's utilisation (``torch.cuda.utilization``,
NVML: ``pip install -e '.[gpu-bench]'``, nvidia-ml-py, where it is missing; "n/a" and the reason otherwise)
sampled every 0.1 s in a background thread, averaged from the trainer's "training ..." line to its last epoch line.

Then the CPU side of the argument: each CPU input pipeline's images/s per worker on the synthetic set (one pass
of ``--cpu-images`` training images through the training augmentation in this process, decoded from the files
or from the cache), and, for a GPU step rate (``--gpu-step-rate IMG_S``, else each model's best compute rate
measured here on CUDA), the CPU workers that rate would need without GPU augmentation: ceil(rate / per-worker
rate).

    python bench/epoch.py                     # CUDA: 100k/10k images, 1 epoch, three models, every option
    python bench/epoch.py --epochs 2 --models vit simplenet-pgd3 --options j8 gpu-augment
    python bench/epoch.py --quick             # 300/100 images, SimpleNet, j0 and cache-j0: checks that it runs

Prints a line ``run: {…}`` (JSON) as each run ends, so a bench stopped by a time limit keeps the runs it finished;
then the tables, then one JSON line ``{"device": …, "runs": [{"model", "option", "flags", "status",
"command_s", "epoch_s", "train_images_per_s", "epoch_images_per_s", "data_wait_share", "compute_images_per_s",
"gpu_util_percent"}, …], "cpu_images_per_s_per_worker": {…}, "workers_needed": {…}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from visionlab.data import ImageListDataset, load_dataset, synth_miniplaces

MODELS = {
    "simplenet": "--model simplenet",
    "resnet18": "--model resnet18",
    "vit": "--model vit",
    "simplenet-pgd3": "--model simplenet --adv-train pgd --adv-steps 3",
}
# name -> (flags, needs CUDA). With --cache-images pinned|device the batches are gathered from the cache in the
# main process (no workers) and augmented on the GPU; --gpu-decode also decodes the JPEGs there (nvJPEG).
OPTIONS: dict[str, tuple[str, bool]] = {
    "j0": ("-j 0", False),
    "j4": ("-j 4", False),
    "j8": ("-j 8", False),
    "j15": ("-j 15", False),
    "cache-j0": ("--cache-images -j 0", False),
    "cache-j8": ("--cache-images -j 8", False),
    "gpu-augment": ("--gpu-augment -j 8", True),
    "gpu-decode": ("--gpu-decode -j 8", True),
    "gpu-augment-cache": ("--gpu-augment --cache-images -j 4", True),
    "cache-pinned": ("--cache-images pinned", True),
    "cache-device": ("--cache-images device", True),
}
CPU_PIPELINES = {"files": False, "cache": True}  # name -> cache=
EPOCH_LINE = re.compile(r"\] epoch (\d+)/(\d+): ")


class UtilisationSampler(threading.Thread):
    """``torch.cuda.utilization()`` (percent of the last sample period a kernel ran) every ``interval`` seconds,
    with the time of each sample; ``error`` holds why it could not sample (no NVML bindings, no driver)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.samples, self.error = interval, [], None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), float(torch.cuda.utilization())))
            except Exception as exc:  # ModuleNotFoundError (pynvml), NVML errors: say it, sample no more
                self.error = f"{exc.__class__.__name__}: {exc}"
                return
            self.stop.wait(self.interval)

    def mean(self, start: float | None, end: float | None) -> float | None:
        inside = [u for t, u in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return sum(inside) / len(inside) if inside else None


def make_set(args: argparse.Namespace) -> Path:
    classes = min(100, args.train)
    root, written = synth_miniplaces(args.root, train=args.train, val=args.val, classes=classes, seed=0,
                                     workers=args.synth_workers, show_progress=True)  # fmt: skip
    print(f"synthetic MiniPlaces in {root}: {args.train} train / {args.val} val, {classes} classes "
          f"({written} images written now)")  # fmt: skip
    return root


def skip_reason(option: str, cuda: bool) -> str | None:
    flags, needs_cuda = OPTIONS[option]
    if needs_cuda and not cuda:
        return "needs CUDA (this run is on the CPU)"
    workers = re.search(r"-j (\d+)", flags)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers and int(workers.group(1)) > cpus:
        return f"{workers.group(1)} workers on {cpus} CPUs"
    return None


def run_command(argv: list[str], sampler: UtilisationSampler | None) -> dict:
    """Run one training command, its output read line by line and timed; returns its wall time, exit status,
    last line, and the GPU utilisation between its "training ..." line and its last epoch line."""
    start = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    began = ended = None
    last = ""
    assert process.stdout is not None
    for line in process.stdout:
        now, line = time.monotonic(), line.rstrip()
        last = line or last
        if began is None and "] training " in line:
            began = now
        if EPOCH_LINE.search(line):
            ended = now
    status = process.wait()
    result = {
        "command_s": round(time.monotonic() - start, 3),
        "status": "ok" if status == 0 else f"failed ({status}): {last}",
    }
    if sampler is not None:
        util = sampler.mean(began, ended)
        result["gpu_util_percent"] = round(util, 1) if util is not None else f"n/a ({sampler.error or 'no sample'})"
    return result


def epoch_figures(run_dir: Path, n_train: int) -> dict:
    """Mean figures of the epoch records (after the first one when there are more)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in records if r.get("type") == "epoch"]
    epochs = epochs[1:] if len(epochs) >= 2 else epochs
    mean = lambda key: sum(r[key] for r in epochs) / len(epochs)  # noqa: E731
    seconds, train, wait = mean("seconds"), mean("train_seconds"), mean("data_wait_seconds")
    return {
        "epoch_s": round(seconds, 3), "train_s": round(train, 3), "data_wait_s": round(wait, 3),
        "train_images_per_s": round(n_train / train, 1), "epoch_images_per_s": round(n_train / seconds, 1),
        "data_wait_share": round(wait / train, 3),
        "compute_images_per_s": round(n_train / (train - wait), 1) if train > wait else None,
    }  # fmt: skip


def one_run(args: argparse.Namespace, root: Path, model: str, option: str, cuda: bool, work: Path) -> dict:
    flags = OPTIONS[option][0]
    row = {"model": model, "option": option, "flags": flags}
    reason = skip_reason(option, cuda)
    if reason:
        print(f"skip {model} / {option}: {reason}")
        return {**row, "status": f"skipped: {reason}"}
    run_dir = work / f"{model}-{option}"
    argv = [sys.executable, "-m", "visionlab", "train", "--data", f"miniplaces:{root}", *shlex.split(MODELS[model]),
            "--epochs", str(args.epochs), "--out", str(run_dir), "--no-progress", "--no-tensorboard",
            "--device", "cuda" if cuda else "cpu", *shlex.split(args.precision), *shlex.split(flags),
            *shlex.split(args.extra)]  # fmt: skip
    print("$ " + shlex.join(argv[1:]), flush=True)
    sampler = UtilisationSampler() if cuda else None
    if sampler is not None:
        sampler.start()
    try:
        row.update(run_command(argv, sampler))
    finally:
        if sampler is not None:
            sampler.stop.set()
    if row["status"] == "ok":
        row.update(epoch_figures(run_dir, args.train))
    print("run: " + json.dumps(row), flush=True)  # at once: a bench stopped by a time limit keeps the runs done
    return row


def cpu_rates(root: Path, images: int) -> dict[str, float]:
    """Training images/s of one worker (this process) for each CPU pipeline: decode + augmentation from the files,
    augmentation alone from the cache (the caching itself not timed; only the ``images`` measured are cached, not
    the whole set)."""
    torch.set_num_threads(1)  # a DataLoader worker runs on one thread
    train = load_dataset(f"miniplaces:{root}", check_images=False).train
    rates = {}
    for name, cache in CPU_PIPELINES.items():
        subset = ImageListDataset(train.entries[: min(images, len(train))], train.transform, cache=cache)
        loader = DataLoader(subset, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(0))
        start, n = time.perf_counter(), 0
        for batch, _ in loader:
            n += batch.shape[0]
        rates[name] = round(n / (time.perf_counter() - start), 1)
    return rates


def print_runs(rows: list[dict]) -> None:
    head = ("model", "option", "command s", "epoch s", "train img/s", "epoch img/s", "data wait", "compute img/s",
            "GPU util %")  # fmt: skip
    print(f"{head[0]:<15}{head[1]:<19}" + "".join(f"{h:>14}" for h in head[2:]))
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['model']:<15}{r['option']:<19}  {r['status']}")
            continue
        wait = f"{100 * r['data_wait_share']:.1f}%"
        cells = (f"{r['command_s']:.1f}", f"{r['epoch_s']:.1f}", f"{r['train_images_per_s']:,.0f}",
                 f"{r['epoch_images_per_s']:,.0f}", wait, f"{r['compute_images_per_s'] or 0:,.0f}",
                 str(r.get("gpu_util_percent", "—")))  # fmt: skip
        print(f"{r['model']:<15}{r['option']:<19}" + "".join(f"{c:>14}" for c in cells))


def workers_needed(
    rows: list[dict], per_worker: dict[str, float], step_rate: float | None, cuda: bool
) -> dict[str, dict]:
    """For the given rate, else each model's best compute rate measured on CUDA: the CPU workers each CPU pipeline
    would need to feed it."""
    rates: dict[str, float] = {}
    if step_rate is not None:
        rates["--gpu-step-rate"] = step_rate
    elif cuda:
        for r in rows:
            if r["status"] == "ok" and r.get("compute_images_per_s"):
                rates[r["model"]] = max(rates.get(r["model"], 0.0), r["compute_images_per_s"])
    return {name: {"step_images_per_s": rate, **{p: math.ceil(rate / v) for p, v in per_worker.items() if v > 0}}
            for name, rate in rates.items()}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="the synthetic set's folder (default: a temporary one)")
    p.add_argument("--train", type=int, default=100_000)
    p.add_argument("--val", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["simplenet", "resnet18", "vit"])
    p.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", help="flags every run gets (default: '--amp --channels-last' on CUDA, none on CPU)")
    p.add_argument("--extra", default="", help="more flags for every run, e.g. '-b 512' or '--limit-val 1000'")
    p.add_argument("--gpu-step-rate", type=float, metavar="IMG_S", help="a GPU training rate to size CPU workers for")
    p.add_argument("--cpu-images", type=int, default=2048, help="training images of the per-worker measurement")
    p.add_argument("--synth-workers", type=int, default=os.cpu_count() or 1, help="processes making the set")
    p.add_argument("--quick", action="store_true", help="300/100 images, 1 epoch, simplenet, j0 and cache-j0")
    args = p.parse_args()
    if args.quick:
        args.train, args.val, args.epochs, args.models = 300, 100, 1, ["simplenet"]
        args.options, args.cpu_images = ["j0", "cache-j0"], 256
    return args


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    args.precision = args.precision if args.precision is not None else ("--amp --channels-last" if cuda else "")
    with tempfile.TemporaryDirectory(prefix="visionlab-bench-epoch-") as tmp:
        args.root = args.root or str(Path(tmp) / "synth")
        root = make_set(args)
        device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
        print(f"{device}; every run: {args.precision or '(no precision flags)'} {args.extra}".rstrip())
        rows = [one_run(args, root, m, o, cuda, Path(tmp)) for m in args.models for o in args.options]
        print(f"\n{args.train} train / {args.val} val images, {args.epochs} epoch(s), {device}")
        print_runs(rows)
        per_worker = cpu_rates(root, args.cpu_images)
    print("\nCPU input pipelines, training images/s per worker: "
          + ", ".join(f"{name} {rate:,.0f}" for name, rate in per_worker.items()))  # fmt: skip
    needed = workers_needed(rows, per_worker, args.gpu_step_rate, cuda)
    for name, row in needed.items():
        wants = ", ".join(f"{p} {n}" for p, n in row.items() if p != "step_images_per_s")
        print(f"{name}: {row['step_images_per_s']:,.0f} images/s needs CPU workers without GPU augmentation: {wants}")
    if not needed:
        print("(no GPU step rate: give --gpu-step-rate IMG_S, or run on CUDA)")
    print(json.dumps({"device": device, "train": args.train, "val": args.val, "epochs": args.epochs, "runs": rows,
                      "cpu_images_per_s_per_worker": per_worker, "workers_needed": needed}))  # fmt: skip


if __name__ == "__main__":
    main()
