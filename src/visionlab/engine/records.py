"""The per-epoch ``metrics.jsonl`` record and its TensorBoard scalars, as the trainer writes them."""

from __future__ import annotations

from typing import Any

__all__ = ["epoch_record"]

_TIMINGS = ("train_seconds", "data_wait_seconds")


def epoch_record(
    epoch: int,
    train: dict[str, float],
    val: dict[str, float],
    seconds: float,
    *,
    lr: float,
    step: int,
    swa_count: int | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Epoch ``epoch``'s record and scalars from the training summary ``train`` (loss, top-1, top-5 and, when the
    loop timed them, ``train_seconds`` / ``data_wait_seconds``) and the validation ``val`` (clean metrics, and the
    robust and weight-average ones when present); ``seconds`` is the epoch's wall time, ``lr`` the learning rate at
    its end, ``step`` the optimizer steps taken, ``swa_count`` the weights the SWA average holds (None: no SWA)."""
    record: dict[str, Any] = {
        "type": "epoch", "epoch": epoch, "lr": lr,
        "train_loss": train["loss"], "train_top1": train["top1"], "train_top5": train["top5"],
        "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
        "seconds": seconds, "step": step,
    }  # fmt: skip
    scalars = {
        "val/top1": val["top1"], "val/top5": val["top5"], "val/loss": val["loss"],
        "train/top1": train["top1"], "train/top5": train["top5"], "train/epoch_loss": train["loss"],
    }  # fmt: skip
    record.update({key: train[key] for key in _TIMINGS if key in train})
    if "robust_top1" in val:
        record["val_robust_top1"] = scalars["val/robust_top1"] = val["robust_top1"]
        record["catastrophic_overfitting"] = val["collapsed"]
    for name in ("ema", "swa"):
        for key in (f"{name}_top1", f"{name}_top5", f"{name}_loss", f"{name}_robust_top1"):
            if key in val:
                record[f"val_{key}"] = scalars[f"val/{key}"] = val[key]
    if swa_count is not None:
        record["swa_count"] = swa_count
    return record, scalars
