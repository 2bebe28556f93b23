"""The typed configuration of a training run, saved with every run (``config.yaml``) and checkpoint, and the
allowed range of every field.

:meth:`TrainConfig.validate` checks the whole configuration at once, before any data is read, and raises a
:class:`~visionlab.errors.ConfigError` naming the field and its allowed range; the command line maps the field
onto its flag. :func:`check_field` applies one field's rule to a lone value (the ``eval`` and ``predict``
options that share a field's meaning, such as ``batch_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from visionlab.checks import is_number
from visionlab.errors import ConfigError

__all__ = ["OPTIMIZERS", "Range", "TrainConfig", "check_field"]

OPTIMIZERS = ("sgd", "adamw")
ADV_TRAIN = ("pgd", "fgsm-rs", "n-fgsm", "trades")
SELECT_BY = ("clean", "robust")
SWA_EVERY = ("epoch", "steps")
NOISE_WITH_ADV_TRAIN = (
    "not with adv_train: Gaussian augmentation trains for randomized smoothing, adversarial training for PGD; "
    "combining them (Salman et al.'s SmoothAdv) is a different objective"
)
DEVICE_TYPES = ("cpu", "cuda", "mps")
CACHE_PLACES = ("host", "pinned", "device")


@dataclass(frozen=True)
class Range:
    """An allowed interval for a number: ``[low, high]``, either end open or absent.

    Args:
        low, high: the bounds (None: unbounded on that side).
        low_open, high_open: exclude the bound itself (``lr > 0``, ``momentum < 1``).
        integer: only ``int`` values (``bool`` excluded); otherwise any finite ``int`` or ``float``.
        optional: ``None`` is allowed too (e.g. ``limit_train``: no limit).
        text: how to say the range when the bounds read badly (``"an integer in [0, 2^64)"``).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False
    text: str | None = None

    def __str__(self) -> str:
        if self.text:
            return self.text
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        return kind

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is of the right type and inside the range."""
        if value is None:
            return self.optional
        if not is_number(value, integer=self.integer):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` (``field=name``) unless :meth:`contains` ``value``."""
        if not self.contains(value):
            raise ConfigError(f"must be {self}, got {value!r}", field=name)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _one_of(choices: Callable[[], tuple[str, ...]], what: str = "") -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        allowed = choices()
        if value not in allowed:
            head, tail = (f"unknown {what} {value!r}: ", "") if what else ("", f", got {value!r}")
            raise ConfigError(f"{head}must be one of {', '.join(allowed)}{tail}", field=name)

    return check


def _optional(rule: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value is not None:
            rule(name, value)

    return check


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", field=name)


def _text(optional: bool) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if (value is None and optional) or (isinstance(value, str) and value):
            return
        raise ConfigError(f"must be a non-empty string{' or unset' if optional else ''}, got {value!r}", field=name)

    return check


def _device(name: str, value: Any) -> None:
    """``auto``, or a device string of a supported type (``cpu``, ``cuda``, ``cuda:N``, ``mps``). Whether that
    device exists is checked when it is selected (:func:`visionlab.engine.select_device`)."""
    if value == "auto":
        return
    try:
        ok = isinstance(value, str) and torch.device(value).type in DEVICE_TYPES
    except (RuntimeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}", field=name)


def _cache_images(name: str, value: Any) -> None:
    if not isinstance(value, bool) and value not in CACHE_PLACES:
        raise ConfigError(f"must be true, false or one of {', '.join(CACHE_PLACES)}, got {value!r}", field=name)


def _mapping(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"must be a mapping of option names to values, got {value!r}", field=name)


def _models() -> tuple[str, ...]:
    from visionlab.models import list_models

    return tuple(list_models())


def _convs() -> tuple[str, ...]:
    from visionlab.models import CONV_TYPES

    return CONV_TYPES


def _augment(name: str, value: Any) -> None:
    from visionlab.data.memory import parse_augment

    if not isinstance(value, str):
        raise ConfigError(f"must be a string such as 'flip,crop=2,erase=0.5', got {value!r}", field=name)
    try:
        parse_augment(value)
    except ValueError as exc:
        raise ConfigError(str(exc), field=name) from None


def _compile_backends() -> tuple[str, ...]:
    import torch._dynamo

    # the production backends (inductor, cudagraphs, ...) and the two debugging ones that capture without codegen
    return tuple(sorted({*torch._dynamo.list_backends(), "aot_eager", "eager"}))


def _rule(kind: Range | Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    return kind.check if isinstance(kind, Range) else kind


# field -> its rule. Every TrainConfig field has one (a test keeps them in step).
_RULES: dict[str, Callable[[str, Any], None]] = {
    name: _rule(kind)
    for name, kind in {
        "data": _text(optional=False),
        "data_root": _text(optional=True),
        "image_size": Range(8, 4096, integer=True, optional=True),
        "limit_train": Range(1, integer=True, optional=True),
        "limit_val": Range(1, integer=True, optional=True),
        "workers": Range(0, integer=True),
        "check_images": _flag,
        "cache_images": _cache_images,
        "gpu_augment": _flag,
        "gpu_decode": _flag,
        "augment": _optional(_augment),
        "shuffle_labels": _flag,
        "model": _one_of(_models, "model"),
        "conv": _one_of(_convs),
        "model_kwargs": _mapping,
        "pretrained": _text(optional=True),
        "freeze_backbone": _flag,
        "unfreeze_at": Range(1, integer=True, optional=True),
        "head_lr_mult": Range(0, low_open=True),
        "epochs": Range(1, integer=True),
        "start_epoch": Range(0, integer=True),
        "batch_size": Range(1, integer=True),
        "optimizer": _one_of(lambda: OPTIMIZERS),
        "lr": Range(0, low_open=True),
        "momentum": Range(0, 1, high_open=True),
        "weight_decay": Range(0),
        "wd_exclude_norm_bias": _flag,
        "warmup": Range(0),
        "clip_grad": Range(0),
        "label_smoothing": Range(0, 1, high_open=True),
        "adv_train": _optional(_one_of(lambda: ADV_TRAIN)),
        "adv_eps": Range(0, 1, low_open=True),
        "adv_eps_ramp": Range(0),
        "adv_steps": Range(1, integer=True),
        "adv_step": Range(0, 1, low_open=True, optional=True),
        "adv_mix": Range(0, 1),
        "trades_beta": Range(0),
        "noise_sigma": Range(0, low_open=True, optional=True),
        "select_by": _one_of(lambda: SELECT_BY),
        "robust_val": Range(1, integer=True),
        "tta": _flag,
        "ema": Range(0, 1, high_open=True),
        "swa_start": Range(0, optional=True),
        "swa_every": _one_of(lambda: SWA_EVERY),
        "seed": Range(0, 2**64 - 1, integer=True, text="an integer in [0, 2^64)"),
        "device": _device,
        "amp": _flag,
        "channels_last": _flag,
        "compile": _optional(_one_of(_compile_backends, "torch.compile backend")),
        "sync_bn": _flag,
        "deterministic": _flag,
        "out": _text(optional=True),
        "print_freq": Range(1, integer=True),
        "tensorboard": _flag,
        "progress": _flag,
        "quiet": _flag,
    }.items()
}


def check_field(name: str, value: Any) -> None:
    """Check ``value`` against the rule of :class:`TrainConfig` field ``name``; raise :class:`ConfigError`
    (with ``field=name``) saying the allowed range when it is outside it."""
    _RULES[name](name, value)


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
    # file datasets: decode every image once and keep it in memory (same samples); True is "host", "pinned" and
    # "device" keep the training images in page-locked host memory or on the device and augment there (gpu_augment)
    cache_images: bool | str = False
    # file datasets: the MiniPlaces augmentation on the device, batched (visionlab.data.device_augment): workers
    # decode and draw the parameters. gpu_decode (implies gpu_augment): workers read the JPEG bytes, the device
    # decodes. Meant for CUDA; allowed on the CPU device, where it gives the CPU path's batches (equivalence tests),
    # no faster.
    gpu_augment: bool = False
    gpu_decode: bool = False
    augment: str | None = None  # in-memory datasets: batch augmentation spec ("flip,crop=2,erase=0.5"); None: theirs
    # the training labels permuted once by torch.randperm seeded with `seed` (validation keeps the true ones): the
    # model of Adebayo et al.'s data-randomization test (visionlab.data.shuffle_labels)
    shuffle_labels: bool = False
    # model
    model: str = "simplenet"
    conv: str = "native"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # fine-tuning: "imagenet" (torchvision's weights from the torch hub cache) or a weights file; the head is new.
    # The backbone (all but the head) frozen for the first unfreeze_at epochs (all epochs when None); the head's lr
    # is head_lr_mult times lr.
    pretrained: str | None = None
    freeze_backbone: bool = False
    unfreeze_at: int | None = None
    head_lr_mult: float = 1.0
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
    # adversarial training (Madry PGD-AT, Wong et al. FGSM-RS, Zhang et al. TRADES); radii in pixel units, L∞
    adv_train: str | None = None
    adv_eps: float = 0.1
    # ε curriculum: the training radius grows linearly from 0 to adv_eps over the first adv_eps_ramp epochs, per
    # step (0: the full radius from the first step); the robust monitor always attacks at adv_eps
    adv_eps_ramp: float = 0.0
    adv_steps: int = 3
    adv_step: float | None = None  # None: 2.5 eps / steps (PGD, TRADES), 1.25 eps (FGSM-RS), eps (N-FGSM)
    adv_mix: float = 0.0  # weight of the clean loss (the course blended 50/50); not TRADES
    trades_beta: float = 6.0
    # Gaussian data augmentation for randomized smoothing (Cohen et al. 2019): train on x + N(0, noise_sigma^2 I),
    # pixel units, not clipped; None: off. Not with adv_train.
    noise_sigma: float | None = None
    # which epoch model_best keeps: best clean top-1, or best PGD-10 top-1 on the first robust_val val images
    select_by: str = "clean"
    robust_val: int = 1000
    # evaluation
    tta: bool = False
    # weight EMA decay (0: none); the average is validated every epoch and saved as model_ema.pth.tar
    ema: float = 0.0
    # stochastic weight averaging (Izmailov et al. 2018): the equal-weight average of the weights from epoch
    # swa_start (may be fractional, like warmup) to the end, taken after every optimizer step or at every epoch
    # end (swa_every); None: none. Validated every epoch beside the model and saved as model_swa.pth.tar
    swa_start: float | None = None
    swa_every: str = "epoch"
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    compile: str | None = None  # torch.compile backend of the training step (inductor); eval and attacks stay eager
    sync_bn: bool = False  # distributed: batch-norm statistics over the global batch (SyncBatchNorm)
    deterministic: bool = True
    out: str | None = None
    print_freq: int = 10
    tensorboard: bool = True
    progress: bool = True  # progress bars on a terminal, a line every few seconds elsewhere
    quiet: bool = False  # no progress and no per-epoch lines on stderr, warnings only

    @property
    def augments_on_device(self) -> bool:
        """Whether the training augmentation runs on the device: ``gpu_augment``, ``gpu_decode`` or a cache in
        pinned or device memory (each implies it)."""
        return self.gpu_augment or self.gpu_decode or self.cache_images in ("pinned", "device")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a stored dict; unknown keys (from a newer version) are an error, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown} (written by a newer visionlab?)")
        return cls(**values)

    def validate(self) -> TrainConfig:
        """Check every field's type and range, then the fields that constrain each other; return ``self``.

        Reads no data: it runs before a dataset is loaded or a run directory is written, so a bad value costs
        nothing. Raises :class:`ConfigError` naming the first field at fault and its allowed range.
        """
        for f in fields(self):
            check_field(f.name, getattr(self, f.name))
        if self.start_epoch >= self.epochs:
            raise ConfigError(
                f"must be in [0, epochs) = [0, {self.epochs}), got {self.start_epoch}", field="start_epoch"
            )
        self._check_fine_tuning()
        self._check_schedules()
        self._check_architecture()
        self._check_device_input()
        if self.noise_sigma is not None and self.adv_train is not None:
            raise ConfigError(NOISE_WITH_ADV_TRAIN, field="noise_sigma")
        return self

    def _check_fine_tuning(self) -> None:
        from visionlab.models import IMAGENET_MODELS

        if self.pretrained == "imagenet" and self.model not in IMAGENET_MODELS:
            raise ConfigError(
                f"ImageNet weights exist for {', '.join(IMAGENET_MODELS)}, not {self.model!r}: give a weights file "
                "or another model",
                field="pretrained",
            )
        if self.unfreeze_at is not None:
            if not self.freeze_backbone:
                raise ConfigError("needs freeze_backbone (it ends the freeze at that epoch)", field="unfreeze_at")
            if self.unfreeze_at >= self.epochs:
                raise ConfigError(
                    f"must be in [1, epochs) = [1, {self.epochs}), got {self.unfreeze_at}", field="unfreeze_at"
                )

    def _check_device_input(self) -> None:
        """The device-side augmentation serves file datasets with the MiniPlaces recipe: not the in-memory ones
        (already augmented a batch at a time in the main process), not with their ``augment`` spec, and JPEG
        decoding on the device has nothing to decode when the images are cached."""
        if not self.augments_on_device:
            return
        from visionlab.data import FASHION_MNIST_ALIASES, IN_MEMORY_KINDS

        field = "gpu_augment" if self.gpu_augment else "gpu_decode" if self.gpu_decode else "cache_images"
        kind = "fashion-mnist" if self.data in FASHION_MNIST_ALIASES else self.data.split(":", 1)[0]
        if kind in IN_MEMORY_KINDS:
            raise ConfigError(
                f"augments file datasets (miniplaces, folder) on the device; {kind} is held in memory and already "
                "augmented a batch at a time in the main process",
                field=field,
            )
        if self.augment is not None:
            raise ConfigError(
                f"cannot honour augment {self.augment!r}: the device applies the MiniPlaces recipe of file datasets "
                "(augment is for in-memory datasets)",
                field=field,
            )
        if self.gpu_decode and self.cache_images:
            raise ConfigError("not with cache_images: the cache already holds decoded images", field="gpu_decode")

    def _check_schedules(self) -> None:
        """The fields counted in epochs of the run (the ε ramp, the start of weight averaging) fit in it."""
        if self.adv_eps_ramp > self.epochs:
            raise ConfigError(
                f"must be in [0, epochs] = [0, {self.epochs}] epochs, got {self.adv_eps_ramp!r}", field="adv_eps_ramp"
            )
        if self.adv_eps_ramp > 0 and self.adv_train is None:
            raise ConfigError("needs adv_train (it ramps the radius of the training attack)", field="adv_eps_ramp")
        if self.swa_start is not None and self.swa_start > self.epochs:
            raise ConfigError(
                f"must be in [0, epochs] = [0, {self.epochs}] epochs, got {self.swa_start!r}: the average would "
                "never start",
                field="swa_start",
            )

    def _check_architecture(self) -> None:
        """The model takes the convolution type and, when ``image_size`` is set, that size: the data kinds with
        a fixed side must have it, and the network must be buildable at it (built on the ``meta`` device, so
        nothing is allocated)."""
        from visionlab.data import fixed_image_size
        from visionlab.models import architecture_kwargs, build_model, takes_conv

        if self.conv != "native" and not takes_conv(self.model):
            raise ConfigError(
                f"model {self.model!r} takes no convolution type: must be native, got {self.conv!r}", field="conv"
            )
        if self.image_size is None:
            return
        kind = self.data.split(":", 1)[0]
        fixed = fixed_image_size(kind)
        if fixed is not None and self.image_size != fixed:
            raise ConfigError(
                f"{kind} images are {fixed}x{fixed}: must be {fixed} or unset, got {self.image_size}",
                field="image_size",
            )
        kwargs = architecture_kwargs(self.model, self.image_size, **self.model_kwargs)
        with torch.device("meta"):
            build_model(self.model, num_classes=2, image_size=self.image_size, conv=self.conv, **kwargs)
