"""The training engine: one explicit loop, short functions, exact resume.

Exact resume: the data order and augmentation come from one ``torch.Generator`` owned by the trainer (the
sampler's permutation and the worker seeds are drawn from it), and its state and the global RNG states are
checkpointed at each epoch end. Resuming restores them, so the replayed epochs draw the same numbers as an
uninterrupted run; with ``deterministic=True`` on CPU the final weights are bit-for-bit identical.

This module holds the loop and its state; how the trainer is set up from its configuration is
:mod:`visionlab.engine.setup`, and the pieces it runs live in the modules named after them (optimizer, loaders,
evaluation, checkpoint, callbacks, divergence; device and distributed helpers in :mod:`visionlab.runtime`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionlab.data import DataBundle, load_dataset
from visionlab.engine.callbacks import Callback
from visionlab.engine.checkpoint import BEST, CHECKPOINT, EMA, SWA, capture_rng, save_checkpoint
from visionlab.engine.config import TrainConfig
from visionlab.engine.divergence import checked_loss, diverged
from visionlab.engine.evaluation import evaluate
from visionlab.engine.loaders import limit
from visionlab.engine.records import epoch_record
from visionlab.engine.setup import TrainerSetup
from visionlab.engine.task import Objective, StepScheduled, build_monitor, build_task
from visionlab.models.finetune import set_backbone_frozen
from visionlab.progress import progress as progress_bar
from visionlab.robustness import RobustMonitor
from visionlab.runtime import (
    AMP_CPU_WARNING,
    DistContext,
    RunningStats,
    WaitTimer,
    autocast,
    cpu_has_native_bf16,
    init_distributed,
    select_device,
)

__all__ = ["Trainer"]


class Trainer(TrainerSetup):
    """Trains ``cfg.model`` on ``cfg.data``; :meth:`fit` runs the epochs.

    Construction happens in stages, each a method a subclass or a later set-up (distributed, another
    objective) can replace: load the checkpoint and the pretrained weights, data, model, loaders, optimization,
    restore, run directory (:class:`~visionlab.engine.setup.TrainerSetup`). The objective, the robust monitor
    and the callbacks come from the caller, with defaults built from ``cfg``.

    Args:
        cfg: the run's configuration (for a full resume, the checkpoint's configuration with run-time fields
            such as ``workers`` overridden by the caller; ``epochs`` may be lowered, never raised).
        resume: a checkpoint path. A ``checkpoint.pth.tar`` (with optimizer state) continues the run exactly,
            writing next to that checkpoint unless ``cfg.out`` names another directory; a
            ``model_best.pth.tar`` (weights only) starts a new run from its weights (fine-tuning).
        bundle: an already loaded dataset (tests, benchmarks); loaded from ``cfg.data`` otherwise.
        task: the training objective ``(model, images, target) -> (loss, logits)``; default
            :func:`~visionlab.engine.task.build_task` of ``cfg`` (cross-entropy with label smoothing; with
            ``cfg.adv_eps_ramp`` the ε curriculum). A :class:`~visionlab.engine.task.StepScheduled` objective is
            told the global step before every call.
        monitor: the robust accuracy measured after every epoch (``select_by`` robust, the catastrophic-overfitting
            alarm); default :func:`~visionlab.engine.task.build_monitor` of ``cfg`` (None: no cost unless
            ``cfg.adv_train`` or ``select_by`` robust asks for one).
        callbacks: called after every epoch on rank 0, in order (e.g. :class:`visionlab.report.PlotCurves`, which
            the CLI's ``train`` passes); default none.
        dist: this process's place in a distributed job; default: the one ``torchrun``'s environment describes
            (:func:`~visionlab.runtime.distributed.init_distributed`), a world of one without it.

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
        monitor: RobustMonitor | None = None,
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
        torch.backends.cudnn.benchmark = not cfg.deterministic  # off: speed asked, cuDNN may autotune (GPU only)
        torch.manual_seed(cfg.seed)
        self.bundle = bundle or load_dataset(
            cfg.data,
            data_root=cfg.data_root,
            image_size=cfg.image_size,
            check_images=cfg.check_images,
            cache=bool(cfg.cache_images),
        )
        self.model_args = self._model_args(state)
        self.model = self._build_model(state)
        if self.dist.rank:  # same initial weights everywhere (DDP checks), then a random stream of its own per rank
            torch.manual_seed(self.dist.rank_seed(cfg.seed))
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the data order: the same on every rank
        self.train_loader, self.val_loader = self._build_loaders()
        self.optimizer, self.scheduler, self.scaler = self._build_optimization()
        self.task = task if task is not None else build_task(cfg, len(self.train_loader))
        self.callbacks = list(callbacks) if callbacks is not None else []
        self.monitor = monitor if monitor is not None else build_monitor(cfg, self.bundle.val, self.device, self.dist)
        self.best_robust_top1, self.last_robust_top1 = 0.0, None
        self.best_ema: float | None = None  # the EMA's best selection metric so far
        self.best_swa: float | None = None  # the SWA average's
        self.start_epoch, self.step, self.best_top1 = self._restore(state)
        self.ema = self._build_ema(state)
        self.swa = self._build_swa(state)
        self._backbone_frozen: bool | None = None
        self.train_model: nn.Module | None = None
        self._freeze_for_epoch(self.start_epoch)  # before DDP is built: it buckets what requires grad then
        self.train_model = self._wrap_model()
        self.run_dir = self._open_run_dir()
        if cfg.amp and self.device.type == "cpu" and cpu_has_native_bf16() is False:
            self._say(f"WARNING: {AMP_CPU_WARNING}", warning=True)

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
    def _state(self, epoch: int, full: bool, model: nn.Module | None = None) -> dict[str, Any]:
        """A checkpoint of ``model`` (default the trained one; an average's weights for ``model_ema`` and
        ``model_swa``); ``full`` adds the optimizer, schedule, averages and random states an exact resume needs."""
        weights = (self.model if model is None else model).state_dict()
        state = {
            "model": weights, "config": self.cfg.to_dict(), "model_args": self.model_args,
            "class_names": list(self.bundle.class_names), "data_kind": self.bundle.kind, "recipe": self.bundle.recipe,
            "epoch": epoch, "step": self.step, "best_top1": self.best_top1,
            "best_robust_top1": self.best_robust_top1, "last_robust_top1": self.last_robust_top1,
            "best_ema": self.best_ema, "best_swa": self.best_swa,
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
            if self.swa is not None:
                state["swa"] = self.swa.state_dict()
        return state

    def _where(self) -> str:
        if not self.dist.enabled:
            return str(self.device)
        return f"{self.dist.world_size} processes ({self.device.type}, DDP, global batch {self.cfg.batch_size})"

    # ------------------------------------------------------------------------------------------ loop
    def _train_step(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of the objective; returns ``(loss, logits)`` (still on the device, no sync)."""
        if isinstance(self.task, StepScheduled):  # checked each step: a caller may replace the task
            self.task.set_step(self.step)
        with autocast(self.device, self.cfg.amp):
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
        if self.swa is not None:  # from its start step, with swa_every "steps"
            self.swa.after_step(self.model, self.step)
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
        # the seconds the loop waits for its batches: the data-wait share of the epoch; on CUDA the loop's time
        # ends when the device has done its queued steps
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else None
        timer = WaitTimer(bar, sync=sync)
        for i, (images, target) in enumerate(timer):
            # .to(memory_format=), not .contiguous(memory_format=): the latter leaves a one-channel batch with its
            # NCHW strides (both layouts address its memory alike), and the first convolution and pool then ran
            # NCHW (SimpleNet's first pool 18 ms vs 2 ms a batch here); .to() spells the NHWC strides out.
            images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
            target = target.to(self.device, non_blocking=True)
            loss, logits = self._train_step(images, target)
            stats.update(loss, logits, target)
            seen += target.shape[0]
            if (i + 1) % cfg.print_freq == 0:  # a bad loss stops the run at the first logged step at or after it
                value = checked_loss(
                    loss, stats, self.dist, run_dir=self.run_dir, epoch=epoch, step=self.step, since=since
                )
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
        summary.update(train_seconds=timer.elapsed, data_wait_seconds=timer.waited)  # this process's own
        if not math.isfinite(summary["loss"]):  # a bad loss after the epoch's last logged step
            raise diverged(self.run_dir, epoch, summary["loss"], f"step {self.step}")
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

    def _average_is_best(self, name: str, val: dict[str, float]) -> bool:
        """Whether the average ``name`` (``ema``, ``swa``) of this epoch becomes its file (``model_ema``,
        ``model_swa``): a new best of its own selection metric (its clean top-1, or its PGD top-1 with
        ``select_by`` robust), kept in ``best_<name>``. Late epochs can lose robustness (FGSM training's overfitting
        near the end of a schedule: 79.6% PGD-10 at epoch 10 of 15, 72.1% at 15, BENCHMARKS.md), so an average is
        kept at its best epoch, as the trained weights are in ``model_best``. False while it was not validated
        (no EMA; an SWA average not started)."""
        key = f"{name}_robust_top1" if self.cfg.select_by == "robust" else f"{name}_top1"
        if key not in val:
            return False
        best = getattr(self, f"best_{name}")
        if best is not None and val[key] <= best:
            return False
        setattr(self, f"best_{name}", val[key])
        return True

    def _end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float], seconds: float) -> dict:
        """Checkpoints (last always, best on a new best of the selection metric, each average at its own best),
        the epoch record, callbacks."""
        is_best = self._is_best(epoch, val)
        averages_best = {name: self._average_is_best(name, val) for name in ("ema", "swa")}
        record, scalars = epoch_record(
            epoch,
            train,
            val,
            seconds,
            lr=self.optimizer.param_groups[0]["lr"],
            step=self.step,
            swa_count=None if self.swa is None else self.swa.count,
        )
        state = self._state(epoch, full=True)
        if self.dist.is_main:
            save_checkpoint(state, self.run_dir / CHECKPOINT)
            if is_best:
                save_checkpoint(self._state(epoch, full=False), self.run_dir / BEST)
            for name, average, path in (("ema", self.ema, EMA), ("swa", self.swa, SWA)):
                if averages_best[name]:
                    assert average is not None
                    save_checkpoint(self._state(epoch, full=False, model=average.module), self.run_dir / path)
            self.log.write(record, epoch + 1, scalars)
            for callback in self.callbacks:
                callback.on_epoch_end(self, record)
        self.dist.barrier()  # the checkpoint is on disk before any rank starts the next epoch
        return record

    def _averages(self) -> dict[str, nn.Module]:
        """The weight averages validated beside the model: the EMA, and the SWA average once it holds weights."""
        averages = {}
        if self.ema is not None:
            averages["ema"] = self.ema.module
        if self.swa is not None and self.swa.count:
            averages["swa"] = self.swa.module
        return averages

    def _validate(self, epoch: int) -> dict[str, Any]:
        """Clean validation metrics, plus the monitor's PGD top-1 (and whether it collapsed) when there is one."""
        cfg = self.cfg
        val: dict[str, Any] = evaluate(
            self.model, self.val_loader, self.device, tta=cfg.tta, amp=cfg.amp, channels_last=cfg.channels_last,
            progress=cfg.progress and self.dist.is_main, dist=self.dist,
        )  # fmt: skip
        for name, module in self._averages().items():
            metrics = evaluate(
                module, self.val_loader, self.device, tta=cfg.tta, amp=cfg.amp,
                channels_last=cfg.channels_last, progress=False, dist=self.dist,
            )  # fmt: skip
            val.update({f"{name}_{key}": metrics[key] for key in ("top1", "top5", "loss")})
            if self.monitor is not None:
                val[f"{name}_robust_top1"] = self.monitor.measure(module)
        if self.monitor is not None:
            robust = self.monitor.measure(self.model)
            val["robust_top1"] = robust
            val["collapsed"] = self.monitor.collapsed(self.last_robust_top1, robust)
            if val["collapsed"]:
                self._say(
                    f"WARNING: catastrophic overfitting at epoch {epoch + 1}: PGD-{self.monitor.steps} top-1 on "
                    f"{min(self.monitor.n, len(self.monitor.val))} validation images fell from "
                    f"{self.last_robust_top1:.2f}% to {robust:.2f}% (the model learned to defeat its training attack "
                    "only). model_best keeps the best epoch by the selection metric; more attack steps (adv_train=pgd, "
                    "adv_steps) or n-fgsm make it rarer",
                    warning=True,
                )
            self.last_robust_top1 = robust
        return val

    def _epoch_line(self, epoch: int, train: dict[str, float], val: dict[str, Any], seconds: float) -> str:
        """The line an epoch prints: train and validation metrics, PGD top-1 and the averages' when measured."""
        robust = f" PGD top-1 {val['robust_top1']:.2f}" if "robust_top1" in val else ""
        for name, label in (("ema", "EMA"), ("swa", "SWA")):
            if f"{name}_top1" in val:
                pgd = f" PGD {val[f'{name}_robust_top1']:.2f}" if f"{name}_robust_top1" in val else ""
                robust += f" | {label} top-1 {val[f'{name}_top1']:.2f}{pgd}"
        return (
            f"epoch {epoch + 1}/{self.cfg.epochs}: train loss {train['loss']:.4f} top-1 {train['top1']:.2f} | "
            f"val loss {val['loss']:.4f} top-1 {val['top1']:.2f} top-5 {val['top5']:.2f}{robust} | {seconds:.0f}s"
        )

    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``cfg.epochs``; returns the last epoch record (with ``run_dir``)."""
        cfg = self.cfg
        record: dict[str, Any] = {}
        self._say(
            f"training {cfg.model} ({self.model_args.get('conv', 'native')} conv) on {self.bundle.kind}: "
            f"{len(self.train_loader.dataset)} train / {len(limit(self.bundle.val, cfg.limit_val))} val images, "
            f"{self._where()}, run directory {self.run_dir}"
        )
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                start = time.perf_counter()
                train = self.train_one_epoch(epoch)
                if self.swa is not None:
                    self.swa.after_epoch(self.model, self.step)
                val = self._validate(epoch)
                record = self._end_epoch(epoch, train, val, time.perf_counter() - start)
                self._say(self._epoch_line(epoch, train, val, record["seconds"]))
        finally:
            self.log.close()
        record["run_dir"] = str(self.run_dir)
        record["best_top1"] = self.best_top1
        if self.monitor is not None:
            record["best_robust_top1"] = self.best_robust_top1
        return record
