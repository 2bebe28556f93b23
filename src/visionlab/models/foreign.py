"""Classifiers that are not visionlab's: a torchvision architecture by name with a local weights file, or your own
``nn.Module`` from a factory function in a Python file — built, loaded and checked here, so the command line
(``visionlab eval/attack/saliency/robustness/report --model-arch`` / ``--model-factory``) and the Python API load
them alike.

Every failure is a :class:`~visionlab.errors.ModelLoadError` naming the input at fault (its ``field``: ``arch``,
``factory``, ``weights``, ``mean``, ``std``, ``transforms_of``) and the file, raised before any data is read:

* ``arch``: not one of ``torchvision.models.list_models(module=torchvision.models)`` (the classification models);
* ``weights``: missing, unreadable, or not fitting the network (missing or unexpected keys, a shape mismatch) —
  read with ``weights_only=True`` (or safetensors), never downloaded;
* ``factory``: ``FILE.py:FUNCTION`` whose file is missing, fails to import, has no such function, whose call
  raises, or that returns something other than an ``nn.Module``.

The network is wrapped by :func:`~visionlab.models.wrap_model` with the statistics it was trained with, so it takes
pixels in [0, 1] like every visionlab model and an attack's ε stays in pixel units. A torchvision architecture's
default statistics are ImageNet's; a factory's model is taken to read pixels in [0, 1] (mean 0, std 1) unless
``mean``/``std`` say otherwise; ``transforms_of`` takes them from a torchvision weights enum's own transforms
(``ResNet18_Weights.IMAGENET1K_V1``: its mean/std, nothing downloaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from visionlab.errors import ModelLoadError, WeightsError
from visionlab.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, load_weights, misfit
from visionlab.models.registry import ImageClassifier, wrap_model
from visionlab.runtime import eval_mode

__all__ = [
    "check_classifier",
    "factory_network",
    "load_classifier",
    "load_state_dict_strict",
    "read_state_dict",
    "resolve_normalization",
    "torchvision_architectures",
    "torchvision_network",
    "torchvision_normalization",
]

# torchvision's classification builders default to ImageNet's 1000 classes; a weights file of another number of
# classes is recognised by the classifier tensors that differ from the default network in this first dimension.
TORCHVISION_DEFAULT_CLASSES = 1000


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0]


def torchvision_architectures() -> list[str]:
    """The names of torchvision's image classification architectures (``resnet18``, ``vit_b_16``, ...)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def read_state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``),
    with the ``module.``/``_orig_mod.`` prefixes of DDP and ``torch.compile`` removed (and a
    :func:`~visionlab.models.wrap_model` model's ``net.`` prefix and ``normalize`` buffers). Never downloads.

    Raises :class:`~visionlab.errors.ModelLoadError` (field ``weights``) naming the file: missing, unreadable, or
    not a mapping of names to tensors.
    """
    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file", field="weights")
    try:
        return load_weights(str(path), model="").tensors
    except WeightsError as exc:
        if "a visionlab checkpoint of" in str(exc):  # load_weights names the model it expected: none here
            message = f"{path}: a visionlab checkpoint, not a state dict (load it as a checkpoint)"
            raise ModelLoadError(message, field="weights") from exc
        raise ModelLoadError(str(exc), field="weights") from exc


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``tensors`` into ``model``: every key must exist on both sides with the same shape.

    Raises :class:`~visionlab.errors.ModelLoadError` (field ``weights``) naming ``source`` and up to four missing
    or unexpected keys, or the first tensor whose shape differs, before anything is copied.
    """
    problem = misfit(source, type(model).__name__, model.state_dict(), tensors)
    if problem is not None:
        raise ModelLoadError(problem, field="weights")
    model.load_state_dict(tensors, strict=True)


def _classes_of(default: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> int | None:
    """The number of classes of ``tensors`` when their only shape differences from the default network are the
    classifier's first dimension (1000 there, the same ``K`` in every such tensor); else None."""
    differing = [k for k in tensors if k in default and tensors[k].shape != default[k].shape]
    sizes = set()
    for key in differing:
        have, want = tensors[key].shape, default[key].shape
        if len(have) != len(want) or have[1:] != want[1:] or want[0] != TORCHVISION_DEFAULT_CLASSES:
            return None
        sizes.add(have[0])
    return sizes.pop() if len(sizes) == 1 else None


def torchvision_network(arch: str, weights: str | Path) -> nn.Module:
    """torchvision's classification architecture ``arch`` (``torchvision.models.get_model``) with the state dict
    ``weights`` loaded strictly, in eval mode. The number of classes is read from the weights' classifier
    (``fc.weight`` of shape ``(3, 512)``: 3 classes), so a fine-tuned head of any size loads.

    Raises :class:`~visionlab.errors.ModelLoadError`: ``arch`` unknown (field ``arch``), the weights missing or not
    fitting (field ``weights``).
    """
    import torchvision

    names = torchvision_architectures()
    if arch not in names:
        close = [n for n in names if n.startswith(arch[:4])] or names[:6]
        raise ModelLoadError(
            f"{arch!r} is not a torchvision classification architecture (e.g. {', '.join(close[:6])}; "
            "torchvision.models.list_models(module=torchvision.models) lists all)",
            field="arch",
        )
    tensors = read_state_dict(weights)
    model = torchvision.models.get_model(arch, weights=None)
    classes = _classes_of(model.state_dict(), tensors)
    if classes is not None:
        model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    load_state_dict_strict(model, tensors, weights)
    return model.eval()


def _import_file(path: Path, spec: str) -> object:
    """The module of the Python file ``path``, imported under a name of its own (its folder on ``sys.path`` while
    it is imported, so it may import its neighbours)."""
    name = "visionlab_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    found = importlib.util.spec_from_file_location(name, path)
    if found is None or found.loader is None:
        raise ModelLoadError(f"{spec}: {path} is not a Python file", field="factory")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    sys.path.insert(0, str(path.resolve().parent))
    try:
        found.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelLoadError(f"{spec}: importing {path} raised {_first_line(exc)}", field="factory") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def factory_network(factory: str, weights: str | Path | None = None) -> nn.Module:
    """The ``nn.Module`` that ``FILE.py:FUNCTION`` returns when called with no arguments (the file imported from
    its path), with the state dict ``weights`` loaded strictly when given, in eval mode.

    Raises :class:`~visionlab.errors.ModelLoadError` (field ``factory``) naming the file: not ``FILE:FUNCTION``,
    the file missing, its import raising, no such function, the call raising, a result that is not an
    ``nn.Module``; (field ``weights``) weights missing or not fitting.
    """
    where, sep, name = factory.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ModelLoadError(f"{factory}: expected FILE.py:FUNCTION (e.g. models/net.py:build)", field="factory")
    path = Path(where)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file (from {factory})", field="factory")
    function = getattr(_import_file(path, factory), name, None)
    if not callable(function):
        raise ModelLoadError(f"{path}: no function {name!r} in it (from {factory})", field="factory")
    try:
        model = function()
    except Exception as exc:
        raise ModelLoadError(f"{factory}: {name}() raised {_first_line(exc)}", field="factory") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"{factory}: {name}() returned a {type(model).__name__}, not a torch.nn.Module", field="factory"
        )
    if weights is not None:
        load_state_dict_strict(model, read_state_dict(weights), weights)
    return model.eval()


def torchvision_normalization(weights_name: str) -> tuple[list[float], list[float]]:
    """The mean/std of the transforms torchvision gives a weights enum (``ResNet18_Weights.IMAGENET1K_V1``, as
    ``torchvision.models.get_weight`` names it; not ``resnet18.IMAGENET1K_V1``): the statistics those weights were
    trained with. Reads the enum only, downloads nothing. Raises :class:`~visionlab.errors.ModelLoadError` (field
    ``transforms_of``) for an unknown name or transforms without a mean/std."""
    import torchvision

    try:
        transforms = torchvision.models.get_weight(weights_name).transforms()
    except Exception as exc:  # get_weight raises ValueError, KeyError or AttributeError by the name's shape
        raise ModelLoadError(
            f"{weights_name!r}: not a torchvision weights name such as ResNet18_Weights.IMAGENET1K_V1 "
            f"({_first_line(exc)})",
            field="transforms_of",
        ) from None
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if mean is None or std is None:
        raise ModelLoadError(f"{weights_name}: its transforms name no mean/std", field="transforms_of")
    return [float(m) for m in mean], [float(s) for s in std]


def resolve_normalization(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int, *, default: str
) -> tuple[list[float], list[float]]:
    """The ``Normalize`` statistics for ``channels`` input channels: ``mean``/``std`` as given (one value is
    repeated over the channels), else ``default``'s: ``"imagenet"`` (averaged to one value for one channel) or
    ``"identity"`` (0 / 1: the network reads pixels in [0, 1]). Raises :class:`~visionlab.errors.ModelLoadError`
    (field ``mean``/``std``) for one given without the other, a count other than 1 or ``channels``, a std <= 0."""
    if (mean is None) != (std is None):
        given, absent = ("mean", "std") if std is None else ("std", "mean")
        raise ModelLoadError(f"given without {absent} (the two describe one normalization)", field=given)
    if mean is None or std is None:
        if default == "identity":
            return [0.0] * channels, [1.0] * channels
        mean, std = (
            (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ([sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3])
        )
    values = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    for field, given in values.items():
        if len(given) not in (1, channels):
            raise ModelLoadError(
                f"{len(given)} values for {channels}-channel images (give 1 or {channels})", field=field
            )
        values[field] = given * channels if len(given) == 1 else given
    if any(s <= 0 for s in values["std"]):
        raise ModelLoadError(f"must be positive, got {values['std']}", field="std")
    return values["mean"], values["std"]


def check_classifier(model: nn.Module, image: torch.Tensor, num_classes: int, *, field: str, source: str) -> None:
    """Run ``model`` (pixels in [0, 1] in) on one ``(C, H, W)`` image, in eval mode without gradients, and require
    logits of shape ``(1, num_classes)``: a network that cannot take the data's images, or predicts another number
    of classes, fails here with one line rather than in the middle of an attack. ``field``/``source``: the input
    and the file to name in the :class:`~visionlab.errors.ModelLoadError`."""
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(image.unsqueeze(0))
    except Exception as exc:
        shape = "x".join(str(s) for s in image.shape)
        raise ModelLoadError(f"{source}: the model cannot take the data's {shape} images ({_first_line(exc)})",
                             field=field) from exc  # fmt: skip
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelLoadError(
            f"{source}: the model's output is {got} for one image; the data has {num_classes} classes, so "
            f"(1, {num_classes}) logits are needed",
            field=field,
        )


def load_classifier(
    *,
    arch: str | None = None,
    factory: str | None = None,
    weights: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    transforms_of: str | None = None,
    in_channels: int = 3,
) -> ImageClassifier:
    """A classifier from outside visionlab, ready for every attack, saliency method and evaluation: pixels in
    [0, 1] ``(N, in_channels, H, W)`` in, logits out, ``Normalize(mean, std)`` in front of the network.

    Give exactly one of ``arch`` (a torchvision classification architecture; ``weights`` required) and
    ``factory`` (``"FILE.py:FUNCTION"``; ``weights`` optional). Statistics: ``mean``/``std``, or
    ``transforms_of`` (a torchvision weights name), else ImageNet's for ``arch`` and none (0 / 1) for ``factory``.
    Example: ``load_classifier(arch="resnet18", weights="resnet18_cifar.pth")``.

    Raises :class:`~visionlab.errors.ModelLoadError` as described in the module docstring.
    """
    if (arch is None) == (factory is None):
        raise ModelLoadError("give exactly one of arch and factory", field="arch" if arch else "factory")
    if arch is not None and weights is None:
        raise ModelLoadError(f"{arch} needs a weights file (visionlab never downloads weights)", field="weights")
    if transforms_of is not None:
        if mean is not None or std is not None:
            raise ModelLoadError("not with mean/std (it gives them)", field="transforms_of")
        mean, std = torchvision_normalization(transforms_of)
    network = torchvision_network(arch, weights) if arch is not None else factory_network(str(factory), weights)
    mean, std = resolve_normalization(mean, std, in_channels, default="imagenet" if arch else "identity")
    return wrap_model(network, mean=mean, std=std).eval()
