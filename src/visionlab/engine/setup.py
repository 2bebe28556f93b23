"""How a :class:`~visionlab.engine.Trainer` is set up from its configuration: the checkpoint to resume and the
pretrained weights (read and checked before any data), the model, the loaders, the optimization, the restored
state and the run directory.

Each stage is a method of :class:`TrainerSetup`, which the trainer extends with its loop, so a subclass or a later
set-up (distributed, another objective) can replace one stage alone. The stages run in the order
:meth:`Trainer.__init__ <visionlab.engine.Trainer>` calls them; each reads only what the earlier ones set.
"""

from __future__ import annotations

import copy
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visionlab.data import DataBundle, DatasetError, ImageListDataset, shuffle_labels
from visionlab.data.memory import is_in_memory, parse_augment
from visionlab.engine.callbacks import NullLog
from visionlab.engine.checkpoint import BEST, CHECKPOINT, CheckpointError, load_checkpoint, restore_rng
from visionlab.engine.config import TrainConfig
from visionlab.engine.ema import WeightEMA
from visionlab.engine.loaders import limit, make_device_loader, make_loader
from visionlab.engine.optim import build_optimizer
from visionlab.engine.schedule import WarmupCosine
from visionlab.engine.swa import WeightAverage
from visionlab.errors import ConfigError
from visionlab.models import PretrainedWeights, architecture_kwargs, build_model, load_weights
from visionlab.runtime import DistContext, MetricsLog, check_compile, needs_loss_scaling, shard_dataset

__all__ = ["TrainerSetup"]


class TrainerSetup:
    """The construction stages of a trainer (see the module docstring); :class:`~visionlab.engine.Trainer` holds
    the loop. The attributes below are set by ``Trainer.__init__`` and by the stages, in this order."""

    cfg: TrainConfig
    dist: DistContext
    device: torch.device
    resume_path: Path | None
    full_resume: bool
    pretrained: PretrainedWeights | None
    bundle: DataBundle
    model_args: dict[str, Any]
    model: nn.Module
    memory_format: torch.memory_format
    generator: torch.Generator
    train_loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosine
    scaler: torch.amp.GradScaler
    best_robust_top1: float
    last_robust_top1: float | None
    best_ema: float | None
    best_swa: float | None
    start_epoch: int
    step: int
    log: MetricsLog | NullLog

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
        if cfg.augments_on_device:
            self._prepare_device_input()  # before the training set is wrapped: the wrappers share its cache
        train_set = self._labelled(limit(self._augmented(b.train), cfg.limit_train))
        if cfg.augments_on_device:
            train = self._device_loader(train_set)
        else:
            train = make_loader(train_set, cfg.batch_size, train=True, workers=cfg.workers, device=self.device,
                                generator=self.generator, dist=self.dist)  # fmt: skip
        val = make_loader(shard_dataset(limit(b.val, cfg.limit_val), self.dist), cfg.batch_size, train=False,
                          workers=cfg.workers, device=self.device)  # fmt: skip
        return train, val

    def _device_input_field(self) -> str:
        cfg = self.cfg
        return "gpu_augment" if cfg.gpu_augment else "gpu_decode" if cfg.gpu_decode else "cache_images"

    def _prepare_device_input(self) -> None:
        """Refuse a training set the device cannot augment (an in-memory one, naming the field), and move its
        cache to pinned host or device memory when ``cfg.cache_images`` says so (pinned is plain host memory on a
        CPU device). The validation cache stays in host memory: it is read by the CPU evaluation pipeline."""
        cfg, train = self.cfg, self.bundle.train
        if not isinstance(train, ImageListDataset):
            raise ConfigError(f"augments file datasets (miniplaces, folder) on the device, not {self.bundle.kind}: "
                              "it is held in memory and augmented a batch at a time already",
                              field=self._device_input_field())  # fmt: skip
        if cfg.cache_images in ("pinned", "device"):
            train.place_cache("pinned" if cfg.cache_images == "pinned" and self.device.type == "cuda" else self.device)

    def _device_loader(self, train: Dataset) -> Any:
        """The training batches augmented on the device (``cfg.augments_on_device``,
        :func:`~visionlab.engine.loaders.make_device_loader`): gathered from the cache when there is one, else
        decoded by the workers, or only read by them with ``gpu_decode``. Refused, naming the field: another
        augmentation than the MiniPlaces recipe, a file that is not a JPEG with ``gpu_decode``."""
        cfg, field = self.cfg, self._device_input_field()
        payload = "index" if cfg.cache_images else "encoded" if cfg.gpu_decode else "image"
        try:
            return make_device_loader(train, cfg.batch_size, payload=payload, workers=cfg.workers, device=self.device,
                                      generator=self.generator, dist=self.dist)  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc), field=field) from exc
        except DatasetError as exc:
            raise ConfigError(str(exc), field="gpu_decode") from exc

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

    def _labelled(self, train: Dataset) -> Dataset:
        """The training set with ``cfg.shuffle_labels``'s random labels: permuted once among the images trained on
        (after ``limit_train``) by ``torch.randperm`` seeded with ``cfg.seed`` (:func:`visionlab.data.shuffle_labels`),
        so every epoch, every rank and an exact resume see the same labels; a generator of its own, so the data
        order is the one the run would have without it. The validation set keeps its true labels."""
        if not self.cfg.shuffle_labels:
            return train
        try:
            return shuffle_labels(train, torch.Generator().manual_seed(self.cfg.seed))
        except TypeError as exc:
            raise ConfigError(str(exc), field="shuffle_labels") from exc

    def _build_optimization(self) -> tuple[torch.optim.Optimizer, WarmupCosine, torch.amp.GradScaler]:
        cfg, steps_per_epoch = self.cfg, len(self.train_loader)
        optimizer = build_optimizer(self.model, cfg)
        scheduler = WarmupCosine(optimizer, round(cfg.warmup * steps_per_epoch), cfg.epochs * steps_per_epoch)
        scaler = torch.amp.GradScaler(self.device.type, enabled=needs_loss_scaling(self.device, cfg.amp))
        return optimizer, scheduler, scaler

    def _restore(self, state: dict[str, Any] | None) -> tuple[int, int, float]:
        """``(start_epoch, step, best_top1)``: the checkpoint's for a full resume; else ``cfg.start_epoch`` with
        the schedule fast-forwarded by that many epochs' steps."""
        if self.full_resume:
            assert state is not None
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:  # empty: saved without loss scaling (CPU, no amp); this run's scaler starts afresh
                self.scaler.load_state_dict(state["scaler"])
            ranks = state.get("rng_ranks")
            same_world = ranks is not None and len(ranks) == self.dist.world_size
            restore_rng(ranks[self.dist.rank] if same_world else state["rng"], self.generator)
            if not same_world and self.dist.rank:  # another world size: rank 0's stream must not be shared
                torch.manual_seed(self.dist.rank_seed(self.cfg.seed + state["step"]))
            self.best_robust_top1 = state.get("best_robust_top1", 0.0)
            self.last_robust_top1 = state.get("last_robust_top1")
            self.best_ema = state.get("best_ema")
            self.best_swa = state.get("best_swa")
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

    def _build_swa(self, state: dict[str, Any] | None) -> WeightAverage | None:
        """Stochastic weight averaging (``cfg.swa_start`` set): from global step ``round(swa_start * steps per
        epoch)``, as the warmup counts its steps; an exact resume continues the checkpoint's average and count."""
        if self.cfg.swa_start is None:
            return None
        start = round(self.cfg.swa_start * len(self.train_loader))
        swa = WeightAverage(self.model, start, self.cfg.swa_every)
        if self.full_resume:
            assert state is not None
            swa.load_state_dict(state["swa"])
        return swa

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

    def _say(self, msg: str, *, warning: bool = False) -> None:
        """A line on stderr from rank 0; with ``quiet`` only warnings."""
        if self.dist.is_main and (warning or not self.cfg.quiet):
            print(f"[visionlab] {msg}", file=sys.stderr, flush=True)
