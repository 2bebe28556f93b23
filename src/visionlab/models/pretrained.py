"""Pretrained weights, in one place: find, verify and read a weights file, then load its backbone into a model.

Sources (``--pretrained``):

* ``imagenet``: torchvision's ImageNet weights, read from the torch hub cache only
  (``torch.hub.get_dir()/checkpoints/``, i.e. ``$TORCH_HOME/hub/checkpoints/``), under the file name of the
  weight enum's URL (``resnet18-f37072fd.pth``). The file's SHA-256 must begin with the hex digits in its name
  (torch.hub's ``check_hash`` convention). Nothing is ever downloaded: a missing file is a
  :class:`~visionlab.errors.WeightsError` at once, saying which file to put where.
* ``PATH``: a torchvision state dict (``.pth``), a safetensors file, or a visionlab checkpoint (of any number of
  classes, ``checkpoint.pth.tar`` or ``model_best.pth.tar``). Read with ``weights_only=True``.

Loading (:meth:`PretrainedWeights.apply`) takes the *backbone*: the classifier head (``get_classifier()``) stays
the model's freshly initialised one, whatever the file's head; every other tensor is copied bit for bit. Keys
must match exactly (a file of another architecture is an error naming the keys), except the stem convolution,
which is adapted:

* RGB filters into a 1-channel stem: summed over the input channels (gray ``g`` replicated to RGB gives
  ``sum_c w_c * g``, exactly the summed filter's response);
* a 7x7 kernel into the 3x3 small-input stem: resized (antialiased bilinear), times 49/9 so a filter's sum — its
  response to a flat image — is kept to first order. An approximation: the batch norm after the stem was fitted to
  the 7x7/2 outputs and adapts when fine-tuned.

Normalization: the weights come with the statistics they were trained with — a visionlab file's own ``Normalize``
mean/std, else ImageNet's (averaged over RGB for a 1-channel model) — and :meth:`PretrainedWeights.normalization`
gives them for the model's first layer. The checkpoint of a run stores these statistics and the architecture,
never the weights' source, so rebuilding a fine-tuned model needs no pretrained file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from visionlab.errors import WeightsError
from visionlab.models.finetune import head_name

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_MODELS",
    "IMAGENET_STD",
    "PretrainedWeights",
    "imagenet_sha256_prefix",
    "imagenet_weights_path",
    "load_weights",
    "misfit",
]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Registry models with torchvision ImageNet weights (``--pretrained imagenet``).
IMAGENET_MODELS = ("resnet18",)
_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers


def _imagenet_url(model: str) -> str:
    from torchvision.models import ResNet18_Weights

    urls = {"resnet18": ResNet18_Weights.IMAGENET1K_V1.url}
    if model not in urls:
        raise WeightsError(f"no ImageNet weights for model {model!r} (they exist for {', '.join(IMAGENET_MODELS)})")
    return urls[model]


def imagenet_weights_path(model: str = "resnet18") -> Path:
    """Where the torch hub cache keeps ``model``'s torchvision ImageNet weights (``resnet18-f37072fd.pth``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(_imagenet_url(model)).path)


def imagenet_sha256_prefix(model: str = "resnet18") -> str:
    """The leading hex digits of the weights' SHA-256, from the URL's file name (``f37072fd``), as torch.hub
    checks them."""
    name = os.path.basename(urlparse(_imagenet_url(model)).path)
    match = torch.hub.HASH_REGEX.search(name)
    if match is None or not match.group(1):  # pragma: no cover - torchvision's names all carry it
        raise WeightsError(f"{name}: no SHA-256 prefix in the file name")
    return match.group(1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class PretrainedWeights:
    """A weights file read into memory: the network's tensors (no ``net.`` prefix, head included as stored).

    Attributes:
        source: what was asked for (``"imagenet"`` or the path given).
        path: the file read.
        kind: ``"torchvision state dict"``, ``"safetensors"`` or ``"visionlab checkpoint"``.
        tensors: parameter and buffer name -> tensor, in the network's names (``conv1.weight``, ``fc.bias``).
        mean, std: the input statistics the weights were trained with when the file stores them, else None
            (ImageNet's are assumed).
    """

    source: str
    path: Path
    kind: str
    tensors: dict[str, torch.Tensor]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def normalization(self, in_channels: int) -> tuple[list[float], list[float]]:
        """The ``Normalize`` mean/std for a model with ``in_channels``: the file's statistics, else ImageNet's;
        averaged over channels for a 1-channel model, repeated for more channels than stored."""
        mean = self.mean if self.mean is not None else IMAGENET_MEAN
        std = self.std if self.std is not None else IMAGENET_STD
        if len(mean) == in_channels:
            return list(mean), list(std)
        if in_channels == 1:
            return [sum(mean) / len(mean)], [sum(std) / len(std)]
        if len(mean) == 1:
            return list(mean) * in_channels, list(std) * in_channels
        raise WeightsError(f"{self.path}: weights for {len(mean)}-channel images cannot feed {in_channels} channels")

    def apply(self, model: nn.Module) -> str:
        """Copy the backbone tensors into ``model`` (an :class:`~visionlab.models.ImageClassifier` or a bare
        network); its classifier head is left as it is (freshly initialised). Returns a one-line summary.

        Raises :class:`WeightsError` naming the keys when the file does not fit the architecture.
        """
        net = getattr(model, "net", model)
        head = head_name(net) + "."
        target = net.state_dict()
        tensors = {k: v for k, v in self.tensors.items() if not k.startswith(head)}
        notes = self._adapt_stem(net, tensors, target)
        problem = misfit(self.path, type(net).__name__, target, tensors, skip=head)
        if problem is not None:
            raise WeightsError(problem)
        with torch.no_grad():
            for key, value in tensors.items():
                target[key].copy_(value)  # state_dict tensors share storage with the parameters and buffers
        fc = net.get_classifier()
        head_note = f"head {head[:-1]} new ({getattr(fc, 'out_features', '?')} classes)"
        return f"{len(tensors)} tensors from {self.path} ({self.kind}); {', '.join([*notes, head_note])}"

    def _adapt_stem(self, net: nn.Module, tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> list:
        """Fit the stem convolution's weight to the model's (in place in ``tensors``); returns what was done."""
        stem = next((name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
        key = f"{stem}.weight"
        if stem is None or key not in tensors or tensors[key].shape == target[key].shape:
            return []
        weight, want, notes = tensors[key], target[key].shape, []
        if weight.dim() != 4 or weight.shape[0] != want[0]:
            return []  # not an adaptable stem: the shape check reports it
        if weight.shape[1] != want[1]:
            if want[1] != 1:
                raise WeightsError(
                    f"{self.path}: {key} takes {weight.shape[1]} input channels, the model {want[1]} (only "
                    "RGB -> grayscale is adapted)"
                )
            weight = weight.sum(dim=1, keepdim=True)
            notes.append(f"stem: {tensors[key].shape[1]}-channel filters summed to 1 channel")
        if weight.shape[2:] != want[2:]:
            area = weight.shape[2] * weight.shape[3] / (want[2] * want[3])
            work = weight if weight.dtype in (torch.float32, torch.float64) else weight.float()
            weight = F.interpolate(work, size=tuple(want[2:]), mode="bilinear", antialias=True) * area
            notes.append(f"stem: {tensors[key].shape[2]}x{tensors[key].shape[3]} kernel resized to {want[2]}x{want[3]}")
        tensors[key] = weight.to(tensors[key].dtype)
        return notes


def misfit(
    source: str | Path,
    network: str,
    target: Mapping[str, torch.Tensor],
    tensors: Mapping[str, torch.Tensor],
    *,
    skip: str | None = None,
) -> str | None:
    """Why ``tensors`` (read from ``source``) cannot be copied into the network ``network`` whose state dict is
    ``target``, or None when every key is on both sides with the same shape. The message names up to four missing
    and four unexpected keys, else the first tensor whose shape differs. Keys of ``target`` starting with ``skip``
    (a classifier head that is not copied) are not required."""
    missing = sorted(k for k in target if not (skip and k.startswith(skip)) and k not in tensors)
    unexpected = sorted(k for k in tensors if k not in target)
    if missing or unexpected:
        what = "; ".join(
            f"{label} {', '.join(keys[:4])}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        return f"{source}: the weights do not fit {network} ({what})"
    for key, value in tensors.items():
        if value.shape != target[key].shape:
            return f"{source}: {key} has shape {tuple(value.shape)}, the model's is {tuple(target[key].shape)}"
    return None


def load_weights(source: str, model: str) -> PretrainedWeights:
    """Find, verify and read the weights ``source`` names for registry model ``model`` (see the module docstring).

    Raises :class:`WeightsError`: ``imagenet`` not in the hub cache (the message names the file and the
    directory), a SHA-256 mismatch, a missing or unreadable file, a visionlab checkpoint of another model.
    """
    if source == "imagenet":
        path = imagenet_weights_path(model)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights for {model} not found: put {path.name} (from {_imagenet_url(model)}) at {path} "
                f"(the torch hub cache, $TORCH_HOME/hub/checkpoints); visionlab never downloads weights"
            )
        prefix, digest = imagenet_sha256_prefix(model), _sha256(path)
        if not digest.startswith(prefix):
            raise WeightsError(
                f"{path}: SHA-256 {digest[:16]}... does not begin with {prefix}, as the file name promises: "
                "a corrupt or different file; replace it"
            )
        return _read(source, path, model, kind="torchvision state dict")
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"{path}: pretrained weights file not found")
    return _read(source, path, model)


def _read(source: str, path: Path, model: str, kind: str | None = None) -> PretrainedWeights:
    if path.suffix == ".safetensors":
        return _from_state_dict(source, path, "safetensors", _read_safetensors(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if name is None:
            raise WeightsError(f"{path}: cannot read the weights (corrupt, or not a PyTorch file)") from None
        raise WeightsError(
            f"{path}: refused: it references {name.group(1)} (loading it could execute code); a weights file holds "
            "only tensors, numbers, strings, lists and dicts"
        ) from None
    except Exception as exc:  # a parser of an untrusted file: whatever it raises, the file is at fault
        raise WeightsError(f"{path}: cannot read the weights ({type(exc).__name__}: {_first_line(exc)})") from exc
    if isinstance(state, dict) and "model" in state and "model_args" in state:
        stored = state["model_args"].get("name") if isinstance(state["model_args"], dict) else None
        if stored != model:
            raise WeightsError(f"{path}: a visionlab checkpoint of {stored!r}, not of {model!r}")
        weights = _from_state_dict(source, path, "visionlab checkpoint", state["model"])
        if "mean" in state["model_args"] and "std" in state["model_args"]:  # as given, not rounded to float32
            weights.mean, weights.std = tuple(state["model_args"]["mean"]), tuple(state["model_args"]["std"])
        return weights
    return _from_state_dict(source, path, kind or "torchvision state dict", state)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsError(f"{path}: reading safetensors files needs the safetensors package") from exc
    try:
        return load_file(path)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read the safetensors file ({_first_line(exc)})") from exc


def _from_state_dict(source: str, path: Path, kind: str, state: Any) -> PretrainedWeights:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``) and a visionlab model's ``net.``; keep the stored
    ``normalize`` statistics as the weights' input statistics."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict (a mapping of names to tensors)")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        tensors[key] = value
    mean = std = None
    if "normalize.mean" in tensors and any(k.startswith("net.") for k in tensors):
        mean = tuple(tensors.pop("normalize.mean").flatten().tolist())
        std = tuple(tensors.pop("normalize.std").flatten().tolist())
        tensors = {k.removeprefix("net."): v for k, v in tensors.items()}
    return PretrainedWeights(source, path, kind, tensors, mean, std)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
