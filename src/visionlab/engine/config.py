"""The typed configuration of a training run, saved with every run (``config.yaml``) and checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that determines a run. Units: lr per step of the optimizer; ``warmup`` in epochs;
    ``clip_grad`` is the max global L2 norm of the gradients (0 disables)."""

    # data
    data: str = "fashion-mnist"
    data_root: str | None = None
    image_size: int | None = None
    limit_train: int | None = None
    limit_val: int | None = None
    workers: int = 4
    check_images: bool = True
    # model
    model: str = "simplenet"
    conv: str = "native"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # optimization
    epochs: int = 90
    start_epoch: int = 0
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    wd_exclude_norm_bias: bool = False
    warmup: float = 5.0
    clip_grad: float = 1.0
    label_smoothing: float = 0.0
    # evaluation
    tta: bool = False
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    deterministic: bool = True
    out: str | None = None
    print_freq: int = 10
    tensorboard: bool = True
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a stored dict; unknown keys (from a newer version) are an error, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**values)
