"""The training engine: one explicit loop, short functions, exact resume.

Exact resume: the data order and augmentation come from one ``torch.Generator`` owned by the trainer (the
sampler's permutation and the worker seeds are drawn from it), and its state and the global RNG states are
checkpointed at each epoch end. Resuming restores them, so the replayed epochs draw the same numbers as an
uninterrupted run; with ``deterministic=True`` on CPU the final weights are bit-for-bit identical.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from visionlab.data import DataBundle, DatasetError, load_dataset
from visionlab.data.memory import InMemoryLoader, is_in_memory, parse_augment
from visionlab.engine.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from visionlab.engine.config import TrainConfig
from visionlab.engine.distributed import (
    DistContext,
    ShardedBatchSampler,
    init_distributed,
    shard_dataset,
    training_batches,
)
from visionlab.engine.ema import WeightEMA
from visionlab.engine.metrics import MetricsLog, RunningStats
from visionlab.engine.schedule import WarmupCosine
from visionlab.engine.task import ClassificationTask, Objective, build_task
from visionlab.errors import ConfigError, UserError
from visionlab.models import PretrainedWeights, architecture_kwargs, build_model, load_weights
from visionlab.models.finetune import set_backbone_frozen, split_head
from visionlab.progress import progress as progress_bar
from visionlab.runtime import eval_mode

__all__ = [
    "Callback",
    "ClassificationTask",
    "PlotCurves",
    "Trainer",
    "TrainingDiverged",
    "build_optimizer",
    "evaluate",
    "make_loader",
    "model_from_checkpoint",
    "param_groups",
    "select_device",
]

CHECKPOINT, BEST = "checkpoint.pth.tar", "model_best.pth.tar"
EMA = "model_ema.pth.tar"  # the weight EMA (cfg.ema > 0) of its best epoch by the selection metric, as model_best


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched.

    ``detail`` says where and what was kept; :meth:`advice` names the config fields to change, under the names a
    caller passes (the command line passes its flags).
    """

    ADVICE_FIELDS = ("lr", "warmup", "clip_grad")

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{detail}. {self.advice()}")

    def advice(self, names: Mapping[str, str] | None = None) -> str:
        lr, warmup, clip = ((names or {}).get(f, f) for f in self.ADVICE_FIELDS)
        return f"Lower {lr}, raise {warmup} or keep {clip} above 0."


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{name!r} requested but CUDA is not available here (use cpu or auto)", field="device")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ConfigError(f"{name!r} requested but CUDA has devices cuda:0 to cuda:{count - 1}", field="device")
    return device


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU does bfloat16 arithmetic natively (``avx512_bf16`` or ``amx_bf16`` in its flags); None
    when that cannot be told (no ``/proc/cpuinfo``: not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


# Measured on a 2-core AMD EPYC with AVX2 only: a SimpleNet epoch on 10k Fashion-MNIST images took 103 s with
# --amp against 12 s without (BENCHMARKS.md): without native bf16 every bf16 op is emulated.
AMP_CPU_WARNING = (
    "amp on this CPU: it has no native bfloat16 arithmetic (no avx512_bf16 / amx_bf16 flag), so bf16 autocast is "
    "emulated and much slower (8.6x per epoch measured on such a CPU); leave amp off on this machine"
)


def check_compile(backend: str, device: torch.device) -> None:
    """Refuse up front what ``torch.compile`` would fail on only at the first step, deep in a traceback: the
    inductor backend generates C++ for the CPU and needs a compiler (``$CXX``, ``g++``, ``clang++`` or ``c++``)."""
    if backend == "inductor" and device.type == "cpu":
        candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in candidates if c):
            raise ConfigError(
                "the inductor backend compiles C++ for the CPU, and no C++ compiler was found (set CXX, or install "
                "g++: apt-get install g++); --compile aot_eager needs none (it captures the graph, without speed-up)",
                field="compile",
            )


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: with ``wd_exclude_norm_bias`` biases, norm weights (all 1-d parameters)
    and position embeddings get no weight decay; with ``head_lr_mult != 1`` the classifier head's parameters get
    ``lr * head_lr_mult``. Order: backbone (decay, no decay), then head, empty groups left out, so group 0 carries
    the base lr. Frozen parameters are included (they get no gradient, so no step and no decay): the groups stay
    the same when the backbone is unfrozen mid-run, which keeps exact resume exact."""
    head = {id(p) for _, p in split_head(model)[1]} if cfg.head_lr_mult != 1.0 else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, n): [] for h in (False, True) for n in (False, True)}
    for name, p in model.named_parameters():
        no_decay = cfg.wd_exclude_norm_bias and (p.ndim <= 1 or name.endswith("pos_embed"))
        buckets[id(p) in head, no_decay].append(p)
    groups = [
        {"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
         "lr": cfg.lr * (cfg.head_lr_mult if is_head else 1.0)}
        for (is_head, no_decay), params in buckets.items() if params
    ]  # fmt: skip
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"must be sgd or adamw, got {cfg.optimizer!r}", field="optimizer")


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    dist: DistContext | None = None,
) -> DataLoader | InMemoryLoader:
    """Batches of ``dataset``; training shuffles with ``generator`` and drops a ragged last batch (unless it is the
    only one: :func:`~visionlab.engine.distributed.training_batches`).

    A dataset held in memory (Fashion-MNIST, CIFAR-10) is served by an :class:`InMemoryLoader` (whole-batch
    indexing and augmentation in this process; ``workers`` unused), anything else by a DataLoader. Its workers
    are not persistent: each epoch's workers are seeded from ``generator``, which is what makes resume exact.

    Distributed training (``dist`` with several ranks): ``batch_size`` is the global batch and each rank gets its
    slice of every global batch (:class:`~visionlab.engine.distributed.ShardedBatchSampler`); DataLoader workers
    add the rank to their seed so ranks do not draw the same augmentation. Evaluation loaders are not sharded
    here: pass :func:`~visionlab.engine.distributed.shard_dataset`'s share."""
    dist = dist or DistContext()
    batch_size, drop_last = training_batches(len(dataset), batch_size, dist) if train else (batch_size, False)
    if is_in_memory(dataset):
        return InMemoryLoader(
            dataset, batch_size, shuffle=train, drop_last=drop_last, generator=generator,
            shard=(dist.rank, dist.world_size) if train else (0, 1),
        )  # fmt: skip
    common: dict[str, Any] = dict(num_workers=workers, pin_memory=device.type == "cuda")
    if not train:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    sampler = ShardedBatchSampler(len(dataset), batch_size, generator, drop_last=drop_last, ctx=dist)
    return DataLoader(dataset, batch_sampler=sampler, generator=generator, worker_init_fn=_RankSeed(dist), **common)


class _RankSeed:
    """``worker_init_fn`` offsetting a DataLoader worker's seeds by its rank (workers of rank 0 keep theirs)."""

    def __init__(self, dist: DistContext) -> None:
        self.dist = dist

    def __call__(self, worker_id: int) -> None:
        if self.dist.rank:
            import random

            seed = self.dist.rank_seed(torch.initial_seed())
            torch.manual_seed(seed)
            random.seed(seed)


def _limit(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    tta: bool = False,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "eval",
    dist: DistContext | None = None,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 (%) over ``loader``. ``tta`` averages the logits of each image
    and its horizontal mirror. The model's train/eval mode is restored afterwards. With ``dist``, each rank
    passes its shard (:func:`~visionlab.engine.distributed.shard_dataset`) and gets the metrics of all of them."""
    stats = RunningStats(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with eval_mode(model):
        for images, target in progress_bar(loader, desc=desc, enabled=progress):
            images = images.to(device, non_blocking=True, memory_format=fmt)  # see Trainer.train_one_epoch
            target = target.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = model(images)
                if tta:
                    logits = 0.5 * (logits + model(images.flip(-1)))
            stats.update(F.cross_entropy(logits.float(), target), logits, target)
    return stats.all_reduce(dist or DistContext()).summary()


def model_from_checkpoint(state: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model from the checkpoint's stored arguments and load its weights."""
    args = dict(state["model_args"])
    try:
        model = build_model(args.pop("name"), **args)
        model.load_state_dict(state["model"])
    except (UserError, RuntimeError, ValueError, TypeError) as exc:  # the checkpoint's values, not our code
        raise CheckpointError(f"the checkpoint's model cannot be rebuilt from its stored arguments ({exc})") from exc
    return model.to(device)


class NullLog:
    """The metrics log of a rank other than 0: writes nothing."""

    def write(self, record: dict[str, Any], step: int, scalars: Mapping[str, float] | None = None) -> None:
        """Dropped."""

    def close(self) -> None:
        """Nothing to close."""


class Callback:
    """A hook the trainer calls after every epoch (plots, reports); subclasses override what they need."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after the epoch's checkpoints and metrics record are written."""


class PlotCurves(Callback):
    """Redraws ``RUN_DIR/curves.png`` (loss, top-1/top-5, lr) from ``metrics.jsonl``: after the run's last epoch,
    and after any other epoch once ``interval`` seconds have passed since the last drawing (or since the first
    epoch began).

    One drawing costs ~0.16 s on 2 CPU cores (matplotlib's figure, layout and PNG; `bench/curves.py`, BENCHMARKS.md):
    nothing beside a 30 s CPU epoch, which is still drawn every time, but a quarter of the trainer tests' time
    (29.6 s -> 21.6 s of the suite, 2026-11-27) when every sub-second epoch of theirs was drawn. ``clock``
    (seconds) is for tests."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._since: float | None = None  # the last drawing, or the first epoch's start

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        now = self.clock()
        if self._since is None:
            self._since = now - record.get("seconds", math.inf)
        if now - self._since < self.interval and record["epoch"] + 1 < trainer.cfg.epochs:
            return
        from visionlab.report import plot_runs

        plot_runs([trainer.run_dir], trainer.run_dir / "curves.png", labels=[trainer.run_dir.name])
        self._since = self.clock()


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data``; :meth:`fit` runs the epochs.

    Construction happens in stages, each a method a subclass or a later set-up (distributed, another
    objective) can replace: load the checkpoint and the pretrained weights, data, model, loaders, optimization,
    restore, run directory.

    Args:
        cfg: the run's configuration (for a full resume, the checkpoint's configuration with run-time fields
            such as ``workers`` overridden by the caller; ``epochs`` may be lowered, never raised).
        resume: a checkpoint path. A ``checkpoint.pth.tar`` (with optimizer state) continues the run exactly,
            writing next to that checkpoint unless ``cfg.out`` names another directory; a
            ``model_best.pth.tar`` (weights only) starts a new run from its weights (fine-tuning).
        bundle: an already loaded dataset (tests, benchmarks); loaded from ``cfg.data`` otherwise.
        task: the training objective ``(model, images, target) -> (loss, logits)``; default
            :func:`~visionlab.engine.task.build_task` of ``cfg`` (cross-entropy with label smoothing).
        callbacks: called after every epoch; default ``[PlotCurves()]``.
        dist: this process's place in a distributed job; default: the one ``torchrun``'s environment describes
            (:func:`~visionlab.engine.distributed.init_distributed`), a world of one without it.

    Distributed (DDP): ``cfg.batch_size`` is the global batch, split evenly over the ranks; every rank draws the
    same data order from the shared generator and trains on its slice; gradients are averaged by
    ``DistributedDataParallel``; metrics are exact sums over ranks; rank 0 alone names the run directory and
    writes logs, checkpoints (of the unwrapped model: they load without DDP), TensorBoard and plots. Exact
    resume under DDP: the data order continues exactly whatever the number of processes (it depends only on the
    shared generator and the global batch); every rank's own random state (dropout, random starts) is saved and
    restored when the world size is the same, so a same-size resume is exact; a resume on another number of
    processes continues the same schedule and data order with freshly seeded per-rank streams.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: str | Path | None = None,
        bundle: DataBundle | None = None,
        task: Objective | None = None,
        callbacks: list[Callback] | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        if dist is None:
            self.dist, self.device = init_distributed(cfg.device)
        else:
            self.dist, self.device = dist, select_device(cfg.device)
        self.resume_path = Path(resume) if resume else None
        state = self._load_resume_state()
        self.full_resume = state is not None and "optimizer" in state
        self.pretrained = self._load_pretrained(state)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(cfg.seed)
        self.bundle = bundle or load_dataset(
            cfg.data,
            data_root=cfg.data_root,
            image_size=cfg.image_size,
            check_images=cfg.check_images,
            cache=cfg.cache_images,
        )
        self.model_args = self._model_args(state)
        self.model = self._build_model(state)
        if self.dist.rank:  # same initial weights everywhere (DDP checks), then a random stream of its own per rank
            torch.manual_seed(self.dist.rank_seed(cfg.seed))
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the data order: the same on every rank
        self.train_loader, self.val_loader = self._build_loaders()
        self.optimizer, self.scheduler, self.scaler = self._build_optimization()
        self.task = task if task is not None else build_task(cfg)
        self.callbacks = list(callbacks) if callbacks is not None else [PlotCurves()]
        self.monitor = self._build_monitor()
        self.best_robust_top1, self.last_robust_top1 = 0.0, None
        self.best_ema: float | None = None  # the EMA's best selection metric so far
        self.start_epoch, self.step, self.best_top1 = self._restore(state)
        self.ema = self._build_ema(state)
        self._backbone_frozen: bool | None = None
        self.train_model: nn.Module | None = None
        self._freeze_for_epoch(self.start_epoch)  # before DDP is built: it buckets what requires grad then
        self.train_model = self._wrap_model()
        self.run_dir = self._open_run_dir()
        if cfg.amp and self.device.type == "cpu" and cpu_has_native_bf16() is False:
            self._say(f"WARNING: {AMP_CPU_WARNING}", warning=True)

    # ------------------------------------------------------------------------------------------ stages
    def _load_resume_state(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, refused up front (before any data is read) when the configuration
        asks an exact resume for more epochs than its learning-rate schedule was planned for."""
        if self.resume_path is None:
            return None
        state = load_checkpoint(self.resume_path)
        planned = state["config"].get("epochs", self.cfg.epochs)
        if "optimizer" in state and self.cfg.epochs > planned:
            raise ConfigError(
                f"{self.cfg.epochs} epochs asked, but {self.resume_path} belongs to a run planned for {planned}: "
                "its learning-rate schedule ends there, so an exact resume would train the extra epochs at "
                f"learning rate 0. To train longer, fine-tune from {self.resume_path.with_name(BEST)} "
                "(weights only) with a new schedule",
                field="epochs",
            )
        return state

    def _load_pretrained(self, state: dict[str, Any] | None) -> PretrainedWeights | None:
        """The weights ``cfg.pretrained`` names, read and verified before any data is loaded; None when there are
        none, or when resuming exactly (the checkpoint holds the weights: no pretrained file is needed)."""
        if self.cfg.pretrained is None or self.full_resume:
            return None
        if state is not None:
            raise ConfigError(
                f"fine-tuning from {self.resume_path} already gives the weights: pretrained weights or a checkpoint "
                "to fine-tune from, not both",
                field="pretrained",
            )
        return load_weights(self.cfg.pretrained, self.cfg.model)

    def _model_args(self, state: dict[str, Any] | None) -> dict[str, Any]:
        b = self.bundle
        if state is not None:
            args = dict(state["model_args"])
            if args["num_classes"] != b.num_classes:
                raise DatasetError(
                    f"{self.cfg.data}: {b.num_classes} classes, but the checkpoint {self.resume_path} predicts "
                    f"{args['num_classes']}"
                )
            expects = (args["in_channels"], args["image_size"])
            if expects != (b.in_channels, b.image_size):
                raise DatasetError(
                    f"{self.cfg.data}: {b.in_channels}-channel {b.image_size}x{b.image_size} images, but the "
                    f"checkpoint {self.resume_path} takes {expects[0]}-channel {expects[1]}x{expects[1]} images"
                )
            return args
        # The whole architecture (registered per-size defaults included), so later edits of the defaults
        # cannot change what this checkpoint rebuilds; with pretrained weights, the input statistics they were
        # trained with (never where the weights came from: the checkpoint rebuilds without that file).
        mean, std = self.pretrained.normalization(b.in_channels) if self.pretrained else (list(b.mean), list(b.std))
        return dict(
            name=self.cfg.model, num_classes=b.num_classes, in_channels=b.in_channels, image_size=b.image_size,
            mean=mean, std=std, conv=self.cfg.conv,
            **architecture_kwargs(self.cfg.model, b.image_size, **self.cfg.model_kwargs),
        )  # fmt: skip

    def _build_model(self, state: dict[str, Any] | None) -> nn.Module:
        args = dict(self.model_args)
        try:
            model = build_model(args.pop("name"), **args)
        except (TypeError, ValueError) as exc:  # an architecture argument the builder refuses (model_kwargs)
            if state is not None:
                raise CheckpointError(f"{self.resume_path}: its model cannot be rebuilt ({exc})") from exc
            raise ConfigError(f"{self.cfg.model}: {exc}", field="model_kwargs") from exc
        if state is not None:
            model.load_state_dict(state["model"])
        elif self.pretrained is not None:
            self._say(f"pretrained weights: {self.pretrained.apply(model)}")
        self.memory_format = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        if self.cfg.sync_bn and self.device.type != "cuda":
            raise ConfigError(
                f"needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only (here: {self.device}); on the CPU "
                "each process normalizes with the statistics of its own share of the batch",
                field="sync_bn",
            )
        if self.cfg.sync_bn and self.dist.enabled:  # batch statistics over the global batch; same parameters
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.device, memory_format=self.memory_format)

    def _wrap_model(self) -> nn.Module:
        """What the training step calls: the model in ``DistributedDataParallel`` under several ranks, then
        ``torch.compile``d with ``cfg.compile``. ``self.model`` stays the plain module (checkpoints, evaluation,
        attacks)."""
        model = self.dist.wrap(self.model, self.device)
        if self.cfg.compile is not None:
            check_compile(self.cfg.compile, self.device)
            model = torch.compile(model, backend=self.cfg.compile)
        return model

    def _build_loaders(self) -> tuple[DataLoader, DataLoader]:
        cfg, b = self.cfg, self.bundle
        train = make_loader(
            _limit(self._augmented(b.train), cfg.limit_train), cfg.batch_size, train=True, workers=cfg.workers,
            device=self.device, generator=self.generator, dist=self.dist,
        )  # fmt: skip
        val = make_loader(shard_dataset(_limit(b.val, cfg.limit_val), self.dist), cfg.batch_size, train=False,
                          workers=cfg.workers, device=self.device)  # fmt: skip
        return train, val

    def _augmented(self, train: Dataset) -> Dataset:
        """The training set with ``cfg.augment``'s batch augmentation (a shallow copy: the bundle is unchanged);
        only in-memory datasets take one."""
        if self.cfg.augment is None:
            return train
        if not is_in_memory(train):
            raise ConfigError(
                f"applies to datasets held in memory (fashion-mnist, cifar10), not {self.bundle.kind}: its files "
                "are augmented by the MiniPlaces recipe",
                field="augment",
            )
        augmented = copy.copy(train)
        augmented.batch_augment = parse_augment(self.cfg.augment)
        return augmented

    def _build_optimization(self) -> tuple[torch.optim.Optimizer, WarmupCosine, torch.amp.GradScaler]:
        cfg, steps_per_epoch = self.cfg, len(self.train_loader)
        optimizer = build_optimizer(self.model, cfg)
        scheduler = WarmupCosine(optimizer, round(cfg.warmup * steps_per_epoch), cfg.epochs * steps_per_epoch)
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp and self.device.type == "cuda")
        return optimizer, scheduler, scaler

    def _build_monitor(self) -> Any:
        """A :class:`~visionlab.robustness.RobustMonitor` when the run trains adversarially or selects its best
        epoch by robust accuracy, else None (no cost)."""
        cfg = self.cfg
        if cfg.adv_train is None and cfg.select_by != "robust":
            return None
        from visionlab.robustness import RobustMonitor

        return RobustMonitor(
            _limit(self.bundle.val, cfg.limit_val), cfg.adv_eps, n=cfg.robust_val, batch_size=cfg.batch_size,
            device=self.device, dist=self.dist,
        )  # fmt: skip

    def _restore(self, state: dict[str, Any] | None) -> tuple[int, int, float]:
        """``(start_epoch, step, best_top1)``: the checkpoint's for a full resume; else ``cfg.start_epoch`` with
        the schedule fast-forwarded by that many epochs' steps."""
        if self.full_resume:
            assert state is not None
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            ranks = state.get("rng_ranks")
            same_world = ranks is not None and len(ranks) == self.dist.world_size
            restore_rng(ranks[self.dist.rank] if same_world else state["rng"], self.generator)
            if not same_world and self.dist.rank:  # another world size: rank 0's stream must not be shared
                torch.manual_seed(self.dist.rank_seed(self.cfg.seed + state["step"]))
            self.best_robust_top1 = state.get("best_robust_top1", 0.0)
            self.last_robust_top1 = state.get("last_robust_top1")
            self.best_ema = state.get("best_ema")
            return state["epoch"] + 1, state["step"], state["best_top1"]
        step = self.cfg.start_epoch * len(self.train_loader)
        for _ in range(step):  # --start-epoch: the schedule begins where that epoch would be
            self.scheduler.step()
        return self.cfg.start_epoch, step, 0.0

    def _build_ema(self, state: dict[str, Any] | None) -> WeightEMA | None:
        """The weight EMA (``cfg.ema`` > 0): a copy of the model's weights at the start (fine-tuning: the loaded
        ones); an exact resume continues the checkpoint's average."""
        if not self.cfg.ema:
            return None
        ema = WeightEMA(self.model, self.cfg.ema)
        if self.full_resume:
            assert state is not None
            ema.load_state_dict(state["ema"])
        return ema

    def _open_run_dir(self) -> Path:
        """``cfg.out`` when given; for a full resume the checkpoint's own directory (wherever it was moved);
        else ``runs/<model>-<dataset>-<time>``. Writes ``config.yaml`` and opens the metrics log; resuming into
        another directory carries the earlier epochs' records over. Distributed: rank 0 names the directory (one
        clock, one name) and alone writes in it; the other ranks get a log that writes nothing."""
        cfg = self.cfg
        if cfg.out:
            run_dir = Path(cfg.out)
        elif self.full_resume:
            assert self.resume_path is not None
            run_dir = self.resume_path.parent
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = Path("runs") / f"{cfg.model}-{self.bundle.kind}-{stamp}"
        run_dir = Path(self.dist.broadcast(str(run_dir)))
        self._refuse_overwrite(run_dir)
        if not self.dist.is_main:
            self.log = NullLog()
            return run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        history = self.resume_path.parent if self.full_resume and self.resume_path is not None else None
        self.log = MetricsLog(
            run_dir, keep_through_epoch=self.start_epoch - 1 if self.full_resume else None,
            tensorboard=cfg.tensorboard, history_from=history,
        )  # fmt: skip
        if self.resume_path is not None and not self.full_resume:
            self._say(f"fine-tuning from the weights of {self.resume_path} (no optimizer state in it)")
        elif self.full_resume:
            self._say(f"resuming {self.resume_path} at epoch {self.start_epoch + 1} (step {self.step})")
        return run_dir

    def _refuse_overwrite(self, run_dir: Path) -> None:
        """A run writes its checkpoints and metrics only into a directory of its own: one that already holds
        another run's checkpoint is refused (its ``model_best`` might be the very weights this run starts from),
        except the directory of the checkpoint an exact resume continues."""
        resumed = self.resume_path.parent.resolve() if self.full_resume and self.resume_path is not None else None
        own = run_dir.resolve() == resumed
        taken = [name for name in (CHECKPOINT, BEST) if (run_dir / name).exists()]
        if taken and not own:
            raise ConfigError(
                f"{run_dir} already holds a run ({', '.join(taken)}): writing there would replace it. Resume it "
                f"with --resume {run_dir / CHECKPOINT}, or choose another directory",
                field="out",
            )

    def _freeze_for_epoch(self, epoch: int) -> None:
        """With ``freeze_backbone``: the backbone frozen before epoch ``unfreeze_at`` (always when None), trained
        from it on. A function of the epoch alone, so a resumed run freezes exactly as the uninterrupted one."""
        if not self.cfg.freeze_backbone:
            return
        frozen = self.cfg.unfreeze_at is None or epoch < self.cfg.unfreeze_at
        if frozen != self._backbone_frozen:
            set_backbone_frozen(self.model, frozen)
            if self.dist.enabled and self.train_model is not None:  # DDP buckets what required grad when built
                self.train_model = self._wrap_model()
            if self._backbone_frozen is not None or not frozen:
                self._say(f"epoch {epoch + 1}: backbone {'frozen' if frozen else 'unfrozen'}")
            self._backbone_frozen = frozen

    # ------------------------------------------------------------------------------------------ helpers
    def _say(self, msg: str, *, warning: bool = False) -> None:
        """A line on stderr from rank 0; with ``quiet`` only warnings."""
        if self.dist.is_main and (warning or not self.cfg.quiet):
            print(f"[visionlab] {msg}", file=sys.stderr, flush=True)

    def _state(self, epoch: int, full: bool, model: nn.Module | None = None) -> dict[str, Any]:
        """A checkpoint of ``model`` (default the trained one; the EMA's weights for ``model_ema``); ``full`` adds
        the optimizer, schedule, EMA and random states an exact resume needs."""
        weights = (self.model if model is None else model).state_dict()
        state = {
            "model": weights, "config": self.cfg.to_dict(), "model_args": self.model_args,
            "class_names": list(self.bundle.class_names), "data_kind": self.bundle.kind, "recipe": self.bundle.recipe,
            "epoch": epoch, "step": self.step, "best_top1": self.best_top1,
            "best_robust_top1": self.best_robust_top1, "last_robust_top1": self.last_robust_top1,
            "best_ema": self.best_ema,
        }  # fmt: skip
        if full:  # every rank's random state (a collective: all ranks call this)
            ranks = self.dist.all_gather(capture_rng(self.generator))
            state.update(
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(), rng=ranks[0], rng_ranks=ranks if self.dist.enabled else None,
                world_size=self.dist.world_size,
            )  # fmt: skip
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
        return state

    def _where(self) -> str:
        if not self.dist.enabled:
            return str(self.device)
        return f"{self.dist.world_size} processes ({self.device.type}, DDP, global batch {self.cfg.batch_size})"

    def _diverged(self, epoch: int, value: float, where: str | None = None) -> TrainingDiverged:
        """The error for a loss of ``value`` (NaN or infinite) at epoch ``epoch``; ``where`` says at which step
        (default: the one just taken)."""
        last = self.run_dir / CHECKPOINT
        keep = f"the last good checkpoint {last} is untouched" if last.exists() else "no checkpoint was written"
        where = where or f"step {self.step}"
        return TrainingDiverged(f"loss is {value} at epoch {epoch + 1}, {where}; stopping ({keep})")

    def _checked_loss(self, epoch: int, loss: torch.Tensor, stats: RunningStats, since: int) -> float:
        """This logged step's loss averaged over the ranks, once it and the epoch's running loss sum are finite.

        Why both: the running sum holds every step of the epoch, so a loss that was NaN or infinite at an unlogged
        step since the last logged one (global steps ``since`` to ``self.step - 1``) is caught here too, even when
        the steps after it are finite again, instead of only at the end of the epoch. Raises
        :class:`TrainingDiverged` naming the step (or the unlogged steps it lies among) and the epoch. One
        all-reduce of the two numbers: every rank sees the same values, so all stop together.
        """
        both = self.dist.all_reduce(torch.stack([loss.detach().double(), stats.loss]))
        value, running = (float(v) for v in both.tolist())
        value /= self.dist.world_size
        if not math.isfinite(value):
            raise self._diverged(epoch, value)
        if not math.isfinite(running):
            last = self.step - 1
            steps = f"step {last}" if since == last else f"one of steps {since} to {last}"
            raise self._diverged(
                epoch, running, f"{steps} (not logged: the epoch's running loss caught it at step {self.step})"
            )
        return value

    # ------------------------------------------------------------------------------------------ loop
    def _train_step(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of the objective; returns ``(loss, logits)`` (still on the device, no sync)."""
        with _autocast(self.device, self.cfg.amp):
            loss, logits = self.task(self.train_model, images, target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss, logits

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self._freeze_for_epoch(epoch)  # before train(): frozen batch-norm layers then stay in eval mode
        self.train_model.train()
        stats = RunningStats(self.device)
        bar = progress_bar(
            self.train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress and self.dist.is_main
        )
        seen, tick = 0, time.perf_counter()
        since = self.step + 1  # the first step the next logged step's check covers
        for i, (images, target) in enumerate(bar):
            # .to(memory_format=), not .contiguous(memory_format=): the latter leaves a one-channel batch with its
            # NCHW strides (both layouts address its memory alike), and the first convolution and pool then ran
            # NCHW (SimpleNet's first pool 18 ms vs 2 ms a batch here); .to() spells the NHWC strides out.
            images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
            target = target.to(self.device, non_blocking=True)
            loss, logits = self._train_step(images, target)
            stats.update(loss, logits, target)
            seen += target.shape[0]
            if (i + 1) % cfg.print_freq == 0:  # a bad loss stops the run at the first logged step at or after it
                value = self._checked_loss(epoch, loss, stats, since)
                since = self.step + 1
                rate = seen / (time.perf_counter() - tick)
                lr = self.optimizer.param_groups[0]["lr"]
                running = stats.summary()
                bar.set_postfix(loss=f"{value:.3f}", top1=f"{running['top1']:.1f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}")
                self.log.write(
                    {"type": "step", "epoch": epoch, "step": self.step, "lr": lr, "loss": value,
                     "top1": running["top1"], "images_per_s": rate},
                    self.step, {"train/loss": value, "train/lr": lr},
                )  # fmt: skip
        bar.close()
        summary = stats.all_reduce(self.dist).summary()
        if not math.isfinite(summary["loss"]):  # a bad loss after the epoch's last logged step
            raise self._diverged(epoch, summary["loss"])
        return summary

    def _is_best(self, epoch: int, val: dict[str, float]) -> bool:
        """Whether this epoch becomes ``model_best``: a new best of the selection metric (``cfg.select_by``:
        clean top-1, or PGD top-1 on the monitor's validation subset); the first epoch of a run always is."""
        first = epoch == self.start_epoch and not (self.best_top1 or self.best_robust_top1)
        if self.cfg.select_by == "robust":
            better = val["robust_top1"] > self.best_robust_top1
        else:
            better = val["top1"] > self.best_top1
        self.best_top1 = max(self.best_top1, val["top1"])
        if "robust_top1" in val:
            self.best_robust_top1 = max(self.best_robust_top1, val["robust_top1"])
        return better or first

    def _ema_is_best(self, val: dict[str, float]) -> bool:
        """Whether the EMA of this epoch becomes ``model_ema``: a new best of the EMA's own selection metric (its
        clean top-1, or its PGD top-1 with ``select_by`` robust). Late epochs can lose robustness (FGSM training's
        overfitting near the end of a schedule: 79.6% PGD-10 at epoch 10 of 15, 72.1% at 15, BENCHMARKS.md), so
        the average is kept at its best epoch, as the trained weights are in ``model_best``."""
        if self.ema is None:
            return False
        metric = val["ema_robust_top1"] if self.cfg.select_by == "robust" else val["ema_top1"]
        if self.best_ema is not None and metric <= self.best_ema:
            return False
        self.best_ema = metric
        return True

    def _end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float], seconds: float) -> dict:
        """Checkpoints (last always, best on a new best of the selection metric), the epoch record, callbacks."""
        is_best, ema_is_best = self._is_best(epoch, val), self._ema_is_best(val)
        record = {
            "type": "epoch", "epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": train["loss"], "train_top1": train["top1"], "train_top5": train["top5"],
            "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
            "seconds": seconds, "step": self.step,
        }  # fmt: skip
        scalars = {
            "val/top1": val["top1"], "val/top5": val["top5"], "val/loss": val["loss"],
            "train/top1": train["top1"], "train/top5": train["top5"], "train/epoch_loss": train["loss"],
        }  # fmt: skip
        if "robust_top1" in val:
            record["val_robust_top1"] = scalars["val/robust_top1"] = val["robust_top1"]
            record["catastrophic_overfitting"] = val["collapsed"]
        for key in ("ema_top1", "ema_top5", "ema_loss", "ema_robust_top1"):
            if key in val:
                record[f"val_{key}"] = scalars[f"val/{key}"] = val[key]
        state = self._state(epoch, full=True)
        if self.dist.is_main:
            save_checkpoint(state, self.run_dir / CHECKPOINT)
            if is_best:
                save_checkpoint(self._state(epoch, full=False), self.run_dir / BEST)
            if ema_is_best:
                assert self.ema is not None
                save_checkpoint(self._state(epoch, full=False, model=self.ema.module), self.run_dir / EMA)
            self.log.write(record, epoch + 1, scalars)
            for callback in self.callbacks:
                callback.on_epoch_end(self, record)
        self.dist.barrier()  # the checkpoint is on disk before any rank starts the next epoch
        return record

    def _validate(self, epoch: int) -> dict[str, Any]:
        """Clean validation metrics, plus the monitor's PGD top-1 (and whether it collapsed) when there is one."""
        cfg = self.cfg
        val: dict[str, Any] = evaluate(
            self.model, self.val_loader, self.device, tta=cfg.tta, amp=cfg.amp, channels_last=cfg.channels_last,
            progress=cfg.progress and self.dist.is_main, dist=self.dist,
        )  # fmt: skip
        if self.ema is not None:
            ema = evaluate(
                self.ema.module, self.val_loader, self.device, tta=cfg.tta, amp=cfg.amp,
                channels_last=cfg.channels_last, progress=False, dist=self.dist,
            )  # fmt: skip
            val.update({f"ema_{key}": ema[key] for key in ("top1", "top5", "loss")})
            if self.monitor is not None:
                val["ema_robust_top1"] = self.monitor.measure(self.ema.module)
        if self.monitor is not None:
            robust = self.monitor.measure(self.model)
            val["robust_top1"] = robust
            val["collapsed"] = self.monitor.collapsed(self.last_robust_top1, robust)
            if val["collapsed"]:
                self._say(
                    f"WARNING: catastrophic overfitting at epoch {epoch + 1}: PGD-{self.monitor.steps} top-1 on "
                    f"{min(self.monitor.n, len(self.monitor.val))} validation images fell from "
                    f"{self.last_robust_top1:.2f}% to {robust:.2f}% (the model learned to defeat its training attack "
                    "only). model_best keeps the best epoch by the selection metric; multi-step PGD training "
                    "(adv_train=pgd) does not do this",
                    warning=True,
                )
            self.last_robust_top1 = robust
        return val

    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``cfg.epochs``; returns the last epoch record (with ``run_dir``)."""
        cfg = self.cfg
        record: dict[str, Any] = {}
        self._say(
            f"training {cfg.model} ({self.model_args.get('conv', 'native')} conv) on {self.bundle.kind}: "
            f"{len(self.train_loader.dataset)} train / {len(_limit(self.bundle.val, cfg.limit_val))} val images, "
            f"{self._where()}, run directory {self.run_dir}"
        )
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                start = time.perf_counter()
                train = self.train_one_epoch(epoch)
                val = self._validate(epoch)
                record = self._end_epoch(epoch, train, val, time.perf_counter() - start)
                robust = f" PGD top-1 {val['robust_top1']:.2f}" if "robust_top1" in val else ""
                if "ema_top1" in val:
                    ema_pgd = f" PGD {val['ema_robust_top1']:.2f}" if "ema_robust_top1" in val else ""
                    robust += f" | EMA top-1 {val['ema_top1']:.2f}{ema_pgd}"
                self._say(
                    f"epoch {epoch + 1}/{cfg.epochs}: train loss {train['loss']:.4f} top-1 {train['top1']:.2f} | "
                    f"val loss {val['loss']:.4f} top-1 {val['top1']:.2f} top-5 {val['top5']:.2f}{robust} | "
                    f"{record['seconds']:.0f}s"
                )
        finally:
            self.log.close()
        record["run_dir"] = str(self.run_dir)
        record["best_top1"] = self.best_top1
        if self.monitor is not None:
            record["best_robust_top1"] = self.best_robust_top1
        return record
