"""Sanity checks for explanation maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): does a map change
when the model does?

**Cascading parameter randomization** (:func:`cascading_randomization`, the paper's Sec. 3.1): on a deep copy of
the model (the caller's model is never touched), the parameterized layers are re-initialised one at a time from
the top (the logits) down, cumulatively, and after each step every method's maps are recomputed and compared,
image by image, with the trained model's maps. A method whose maps explain the model must change once the model
is random; one whose maps stay the same explains the image (an edge detector, :func:`~visionlab.explain.edge_map`,
is the extreme case: it never looks at the model).

* *Layers*: every module with parameters of its own (``parameters(recurse=False)``: convolutions, linear layers,
  norms, a ViT's token and position parameters on its top module), in ``named_modules()`` (registration) order,
  which for visionlab's models is the order of the forward pass; the cascade runs it backwards
  (:func:`parameterized_layers`, :func:`cascade`).
* *Granularity* (:func:`layer_groups`): ``"layer"`` (default) randomizes one such layer per step, as the paper does
  for VGG-16; ``"block"`` one block per step, as it does for Inception v3 (one step per inception block): every
  layer inside a numbered block (an item of a ``Sequential``/``ModuleList`` that holds modules itself: a residual
  block ``net.blocks.1``, ``net.layer2.0``, a transformer block) is randomized in the same step, and a
  normalization layer (batch, group, layer or instance norm) outside a block in the same step as the single layer
  right before it (conv + batch norm, ``net.stem.0+1``). Steps: SimpleNet 8 / 8, ImprovedNet 19 / 5, ResNet-18 41
  / 10, the ViT 44 / 12 (layer / block); each step costs one recomputation of every method's maps, so "block"
  makes a deep model's check 2-4x cheaper. Both reach the same fully randomized model: each layer's seed is drawn
  in the same order (top layer first) whatever the grouping.
* *Initialisation*: a layer with a ``reset_parameters()`` (every torch layer) gets its own default init, as in a
  freshly built model (Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and biases; norms: weight 1,
  bias 0 and fresh running statistics); any other module's own parameters are drawn from N(0, 0.02^2) truncated
  to ±2 (timm's init of a ViT's tokens). Each layer's draws come from torch's global RNG seeded with a number drawn
  from the ``generator`` argument, inside :func:`torch.random.fork_rng`, so the caller's global RNG is left as it
  was and a seeded generator gives the same cascade every time (Quantus' ``MPRT`` uses the same
  ``reset_parameters()``, seeded from the global RNG).
* *Similarity*: both measures on **absolute** maps (the paper's Spearman "with absolute value"; the sign of an
  attribution is not what is drawn): :func:`~visionlab.explain.similarity.spearman` on the maps as they are, and
  :func:`~visionlab.explain.similarity.ssim` (skimage's defaults) on the maps min-max scaled to [0, 1] each.
  A constant map has no ranking: its Spearman correlation (NaN) counts as 0 here, "no shared ordering".
* *The rule* (fixed before any result was seen, never tuned to let a method pass): a method **passes** when the
  mean over images of the Spearman correlation with the fully randomized model's maps is below ``threshold``
  (default 0.5: less than half of the trained ranking survives) *and* the method agrees with itself on the
  trained model (a second call's mean Spearman >= ``threshold``; a method whose maps are noise would otherwise
  "pass" without depending on the model). It **falls at** the first layer from whose randomization on the mean
  Spearman stays below ``threshold`` to the end of the cascade.

**Data randomization** (:func:`data_randomization`, the paper's Sec. 3.2): the same table between the maps of the
trained model and those of a second model of the same kind trained on shuffled labels.

The results (:class:`SanityResult`) keep every image's similarities and one image's maps for the figure
(:func:`visionlab.explain.figures.cascade_figure`) and turn into plain JSON-ready dicts with ``to_dict()``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError
from visionlab.explain.base import Explainer
from visionlab.explain.similarity import centered_ranks, minmax_normalize, rank_correlation, ssim
from visionlab.progress import progress as progress_bar
from visionlab.runtime import channels_last_copy, eval_mode

__all__ = [
    "DEFAULT_THRESHOLD",
    "GRANULARITIES",
    "MethodSanity",
    "SanityResult",
    "cascade",
    "cascading_randomization",
    "data_randomization",
    "layer_groups",
    "parameterized_layers",
]

DEFAULT_THRESHOLD = 0.5
"""The default pass line on the mean Spearman rank correlation (absolute maps, trained vs randomized model)."""
GRANULARITIES = ("layer", "block")
"""What one step of the cascade randomizes: one parameterized layer, or one block (the module docstring)."""
# The normalization layers that join the layer before them in a "block" step (those that can own parameters).
NORM_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d,
)  # fmt: skip


@dataclass(frozen=True)
class MethodSanity:
    """One method's similarity to its own trained-model maps over the steps of a randomization.

    Attributes:
        method: the method's name (the key of the ``explainers`` mapping).
        steps: the name of each step: the layer randomized at that step (cumulatively, top first), or the label
            of the second model in a data randomization.
        spearman: ``(S, N)`` float64, Spearman rank correlation of each image's absolute map after each step with
            its trained-model map (NaN of a constant map counted as 0).
        ssim: ``(S, N)`` float64, SSIM of the same maps, each min-max scaled to [0, 1].
        repeat_spearman: ``(N,)`` float64, Spearman of a second call on the trained model with the first: 1 for a
            deterministic method.
        threshold: the pass line on the mean Spearman.
        example_maps: ``(S + 1, H, W)``: the trained model's map of the example image, then its map after each
            step (for the figure).
    """

    method: str
    steps: tuple[str, ...]
    spearman: Tensor
    ssim: Tensor
    repeat_spearman: Tensor
    threshold: float
    example_maps: Tensor

    @property
    def mean_spearman(self) -> list[float]:
        """Mean over images of the Spearman correlation after each step."""
        return self.spearman.mean(dim=1).tolist()

    @property
    def mean_ssim(self) -> list[float]:
        """Mean over images of the SSIM after each step."""
        return self.ssim.mean(dim=1).tolist()

    @property
    def stable(self) -> bool:
        """Whether the method agrees with itself on the trained model (mean repeat Spearman >= threshold)."""
        return float(self.repeat_spearman.mean()) >= self.threshold

    @property
    def passed(self) -> bool:
        """The rule of the module docstring: stable, and the last step's mean Spearman below the threshold."""
        return self.stable and self.mean_spearman[-1] < self.threshold

    @property
    def falls_at(self) -> str | None:
        """The step from which on the mean Spearman stays below the threshold; ``None`` unless :attr:`passed`."""
        if not self.passed:
            return None
        means = self.mean_spearman
        first = len(means) - 1
        while first > 0 and means[first - 1] < self.threshold:
            first -= 1
        return self.steps[first]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the verdict, the curves' means and spreads (sd over images), and every image's values."""
        return {
            "method": self.method,
            "passed": self.passed,
            "stable": self.stable,
            "falls_at": self.falls_at,
            "threshold": self.threshold,
            "steps": list(self.steps),
            "repeat_spearman": float(self.repeat_spearman.mean()),
            "spearman_mean": self.mean_spearman,
            "spearman_sd": _spread(self.spearman),
            "ssim_mean": self.mean_ssim,
            "ssim_sd": _spread(self.ssim),
            "spearman": self.spearman.tolist(),
            "ssim": self.ssim.tolist(),
        }


@dataclass(frozen=True)
class SanityResult:
    """A randomization check of several methods on the same images: :class:`MethodSanity` per method.

    ``kind`` is ``"cascading"`` or ``"data"``; ``example`` the index (in the images given) of the image whose maps
    are kept, ``example_image`` that image ``(C, H, W)``; ``seed`` the generator's ``initial_seed()`` (``None`` for a
    data randomization, which draws nothing); ``granularity`` what one step of a cascade randomized (one of
    :data:`GRANULARITIES`; ``None`` for a data randomization).
    """

    kind: str
    methods: dict[str, MethodSanity]
    num_images: int
    example: int
    example_image: Tensor
    seed: int | None
    granularity: str | None = None

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps' names, shared by every method."""
        return next(iter(self.methods.values())).steps

    def table(self) -> list[dict[str, Any]]:
        """One row per method: name, passed, falls_at, repeat and final mean Spearman, final mean SSIM."""
        return [
            {"method": name, "passed": m.passed, "falls_at": m.falls_at,
             "repeat_spearman": float(m.repeat_spearman.mean()), "final_spearman": m.mean_spearman[-1],
             "final_ssim": m.mean_ssim[-1]}
            for name, m in self.methods.items()
        ]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the check's kind, sizes, the table and every method's curves."""
        return {
            "kind": self.kind,
            "granularity": self.granularity,
            "num_images": self.num_images,
            "example": self.example,
            "seed": self.seed,
            "steps": list(self.steps),
            "table": self.table(),
            "methods": {name: m.to_dict() for name, m in self.methods.items()},
        }


def parameterized_layers(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that own parameters (``parameters(recurse=False)`` not empty), in
    ``named_modules()`` order: bottom (input) first. The top module is named ``""``."""
    return [name for name, module in model.named_modules() if next(module.parameters(recurse=False), None) is not None]


def layer_groups(
    model: nn.Module, *, layers: Sequence[str] | None = None, granularity: str = "layer"
) -> list[tuple[str, tuple[str, ...]]]:
    """The steps of a cascade, bottom (input) first: ``(step name, the layers it randomizes)``.

    ``layers``: the parameterized layers to randomize (default: all of :func:`parameterized_layers`).
    ``granularity`` (:data:`GRANULARITIES`): ``"layer"``, one layer per step, named by the layer; ``"block"``, the
    module docstring's grouping: a numbered block's layers in one step named by the block (``net.blocks.1``), a
    normalization layer with the single layer before it, named ``net.stem.0+1`` (``net.conv1+bn1``).
    """
    names = _check_layers(model, layers)
    if granularity not in GRANULARITIES:
        raise ConfigError(f"must be one of {', '.join(GRANULARITIES)}, got {granularity!r}", field="granularity")
    if granularity == "layer":
        return [(name, (name,)) for name in names]
    modules = dict(model.named_modules())
    groups: list[tuple[str, list[str], bool]] = []  # (step name, layers, is a block)
    for name in names:
        block = _block_of(name)
        last = groups[-1] if groups else None
        if block is not None and last is not None and last[2] and last[0] == block:
            last[1].append(name)
        elif block is None and last is not None and _follows(modules, last, name):
            groups[-1] = (_pair_name(last[1][0], name), [last[1][0], name], False)
        else:
            groups.append((block or name, [name], block is not None))
    return [(step, tuple(members)) for step, members, _ in groups]


def cascade(
    model: nn.Module,
    *,
    layers: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
    granularity: str = "layer",
) -> Iterator[tuple[str, nn.Module]]:
    """Re-initialise ``model``'s parameterized layers from the top down, cumulatively, on one deep copy.

    Yields ``(step name, the copy)`` after each step's re-initialisation (the same copy object each time, one more
    step random at each): a layer, or with ``granularity="block"`` a group of layers (:func:`layer_groups`).
    ``layers``: the names to randomize (default: :func:`parameterized_layers`); whatever order they are given in,
    they are randomized top (last in ``named_modules()``) first. ``generator``: the source of each layer's seed,
    one per layer in that order whatever the granularity (default: a CPU generator seeded with 0). The init is the
    module docstring's. ``model`` itself is never modified.
    """
    groups = layer_groups(model, layers=layers, granularity=granularity)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    random_model = copy.deepcopy(model)
    modules = dict(random_model.named_modules())
    for step, members in reversed(groups):
        for name in reversed(members):
            _reinitialise(modules[name], int(torch.randint(2**62, (), generator=generator)))
        yield step, random_model


def cascading_randomization(
    model: nn.Module,
    images: Tensor,
    explainers: Mapping[str, Explainer],
    target: Tensor | None = None,
    *,
    layers: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int | None = None,
    example: int = 0,
    granularity: str = "layer",
    progress: bool = False,
    reference: Mapping[str, Tensor] | None = None,
) -> SanityResult:
    """Adebayo et al.'s cascading parameter randomization of every method in ``explainers`` on ``images``.

    Args:
        model: a classifier on pixels ``(N, C, H, W)`` in [0, 1] returning logits; never modified (the check
            works on a deep copy, whose mode, parameters and buffers it may change).
        images: ``(N, C, H, W)`` pixels in [0, 1]; never modified.
        explainers: ``{name: Explainer}`` (:data:`~visionlab.explain.Explainer`); each is called with the copy,
            a chunk of the images and their targets.
        target: the class each map explains, ``(N,)`` long; default: the trained model's top prediction, kept
            through the whole cascade.
        layers: the layer names to randomize (default: all of :func:`parameterized_layers`); an unknown name is a
            :class:`~visionlab.errors.ConfigError` on ``layers`` listing the known ones.
        generator: seeds the re-initialisations (default: a CPU generator seeded with 0).
        threshold: the pass line on the mean Spearman, in (0, 1] (default :data:`DEFAULT_THRESHOLD`).
        batch_size: images per explainer call (default: all at once).
        example: the index of the image whose maps are kept for the figure (default 0).
        granularity: ``"layer"`` (default) or ``"block"``: what one step randomizes (:func:`layer_groups`).
        progress: show the steps done on stderr (:func:`visionlab.progress.progress`).
        reference: ``{name: (N, H, W) maps}`` of the trained model the caller has (Quantus' ``a_batch``) for
            some methods: each step is compared with them, one call less; the stability rule's fresh call then
            also checks that they are the method's maps of this model.

    Returns:
        A :class:`SanityResult` of kind ``"cascading"`` whose steps are the randomized layers (or blocks), top
        first.
    """
    _check_common(images, explainers, threshold, batch_size, example)
    given = _check_reference(reference, explainers, images)
    groups = layer_groups(model, layers=layers, granularity=granularity)
    names = [name for _, members in groups for name in members]
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    trained = _working_copy(model)
    target = _target(trained, images, target, batch_size)
    first, repeat = _trained_maps(explainers, trained, images, target, batch_size, given)
    randomized: dict[str, list[Tensor]] = {name: [] for name in explainers}
    cascaded = cascade(trained, layers=names, generator=generator, granularity=granularity)
    for _ in progress_bar(range(len(groups)), desc="sanity check: cascade steps", enabled=progress):
        _, random_model = next(cascaded)
        for name, fn in explainers.items():
            randomized[name].append(_maps(fn, random_model, images, target, batch_size))
    steps = tuple(step for step, _ in reversed(groups))
    methods = {name: _method(name, steps, first[name], repeat[name], randomized[name], threshold, example)
               for name in explainers}  # fmt: skip
    image = images[example].detach().clone()
    return SanityResult("cascading", methods, len(images), example, image, generator.initial_seed(), granularity)


def _trained_maps(
    explainers: Mapping[str, Explainer],
    model: nn.Module,
    images: Tensor,
    target: Tensor,
    batch_size: int | None,
    given: Mapping[str, Tensor],
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Each method's maps of the trained model (those ``given``, or a call) and a second, fresh call's maps."""
    first = {name: given[name] if name in given else _maps(fn, model, images, target, batch_size)
             for name, fn in explainers.items()}  # fmt: skip
    return first, {name: _maps(fn, model, images, target, batch_size) for name, fn in explainers.items()}


def data_randomization(
    model: nn.Module,
    random_model: nn.Module,
    images: Tensor,
    explainers: Mapping[str, Explainer],
    target: Tensor | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int | None = None,
    example: int = 0,
    label: str = "random labels",
) -> SanityResult:
    """Adebayo et al.'s data randomization test: each method's maps of ``model`` against those of
    ``random_model``, the same architecture trained on shuffled labels, on the same ``images`` and ``target``
    (default: ``model``'s top prediction). One step, named ``label``; the same rule, table and ``to_dict()`` as
    :func:`cascading_randomization`. Neither model is modified (both are deep-copied)."""
    _check_common(images, explainers, threshold, batch_size, example)
    trained, other = _working_copy(model), _working_copy(random_model)
    target = _target(trained, images, target, batch_size)
    methods = {}
    for name, fn in explainers.items():
        reference = _maps(fn, trained, images, target, batch_size)
        repeat = _maps(fn, trained, images, target, batch_size)
        maps = _maps(fn, other, images, target, batch_size)
        methods[name] = _method(name, (label,), reference, repeat, [maps], threshold, example)
    return SanityResult("data", methods, len(images), example, images[example].detach().clone(), None)


def _method(
    name: str,
    steps: tuple[str, ...],
    reference: Tensor,
    repeat: Tensor,
    randomized: list[Tensor],
    threshold: float,
    example: int,
) -> MethodSanity:
    """Compare the trained-model maps with a repeat call and with each step's maps."""
    ref = reference.abs()
    scaled = minmax_normalize(ref)
    ranks = centered_ranks(ref)  # once for every step
    rank = [_spearman(ranks, maps.abs()) for maps in randomized]
    structure = [ssim(scaled, minmax_normalize(maps.abs())) for maps in randomized]
    example_maps = torch.stack([reference[example]] + [maps[example] for maps in randomized])
    return MethodSanity(
        name, steps, torch.stack(rank), torch.stack(structure), _spearman(ranks, repeat.abs()), threshold, example_maps
    )


def _spearman(reference_ranks: Tensor, maps: Tensor) -> Tensor:
    """:func:`~visionlab.explain.similarity.spearman` of each map with the reference map whose
    :func:`~visionlab.explain.similarity.centered_ranks` are given, the NaN of a constant map counted as 0 (no
    shared ordering)."""
    return rank_correlation(reference_ranks, centered_ranks(maps)).nan_to_num(nan=0.0)


def _working_copy(model: nn.Module) -> nn.Module:
    """The check's own copy of ``model``, channels-last when it has 2-D convolutions
    (:func:`~visionlab.runtime.channels_last_copy`: ~3x faster passes): made once, so that neither the cascade's
    steps nor each explainer call copy and convert it again (which took ~20% of SimpleNet's check). The cascade's
    re-initialisations write in place and keep the memory format."""
    fast = channels_last_copy(model)
    return fast if fast is not model else copy.deepcopy(model)


def _maps(fn: Explainer, model: nn.Module, images: Tensor, target: Tensor, batch_size: int | None) -> Tensor:
    """``fn``'s maps of all images, ``batch_size`` per call, checked to be ``(N, H, W)``; computed on a
    channels-last ``model`` (:func:`_working_copy` made it so; a copy is made here only if a custom
    re-initialisation replaced a convolution's weight with a contiguous one)."""
    step = batch_size or len(images)
    fast = channels_last_copy(model)
    chunks = [fn(fast, images[i : i + step], target[i : i + step]) for i in range(0, len(images), step)]
    maps = torch.cat([c.detach() for c in chunks])
    n, _, h, w = images.shape
    if maps.shape != (n, h, w):
        raise ConfigError(f"an explainer must return maps ({n}, {h}, {w}), got {tuple(maps.shape)}", field="maps")
    return maps


@torch.no_grad()
def _target(model: nn.Module, images: Tensor, target: Tensor | None, batch_size: int | None) -> Tensor:
    """``target`` checked, or the model's top prediction per image (in eval mode)."""
    if target is not None:
        if not isinstance(target, Tensor) or target.shape != (len(images),) or target.is_floating_point():
            raise ConfigError(f"must be an integer tensor ({len(images)},), got {target!r}", field="target")
        return target.to(device=images.device, dtype=torch.long)
    step = batch_size or len(images)
    with eval_mode(model):
        return torch.cat([model(images[i : i + step]).argmax(dim=1) for i in range(0, len(images), step)])


@torch.no_grad()
def _reinitialise(module: nn.Module, seed: int) -> None:
    """The module docstring's init of one layer, from torch's global RNG seeded with ``seed`` inside a fork."""
    devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        else:
            for parameter in module.parameters(recurse=False):
                nn.init.trunc_normal_(parameter, std=0.02, a=-0.04, b=0.04)


def _block_of(name: str) -> str | None:
    """The numbered block a layer lies in: its name up to the first index that is followed by more names
    (``net.blocks.1.shortcut.0`` -> ``net.blocks.1``), or None (``net.stem.0``, ``net.fc``)."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return None


def _follows(modules: dict[str, nn.Module], last: tuple[str, list[str], bool], name: str) -> bool:
    """Whether layer ``name`` (outside any block) is a norm joining the step ``last``: one layer, not a norm,
    not a block."""
    single = not last[2] and len(last[1]) == 1 and not isinstance(modules[last[1][0]], NORM_LAYERS)
    return single and isinstance(modules[name], NORM_LAYERS)


def _pair_name(layer: str, norm: str) -> str:
    """A layer and the norm after it: ``net.stem.0+1`` when they share a parent, else both names joined by ``+``."""
    parent, _, own = norm.rpartition(".")
    return f"{layer}+{own}" if layer.rpartition(".")[0] == parent else f"{layer}+{norm}"


def _check_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The layer names in ``named_modules()`` order (all parameterized ones for ``None``), checked."""
    known = parameterized_layers(model)
    if not known:
        raise ConfigError("the model has no layer with parameters to randomize", field="model")
    if layers is None:
        return known
    if isinstance(layers, str) or not layers:
        raise ConfigError(f"must be a non-empty list of layer names, got {layers!r}", field="layers")
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ConfigError(f"unknown layer(s) {unknown}; layers with parameters: {known}", field="layers")
    return [name for name in known if name in set(layers)]


def _check_common(
    images: Tensor, explainers: Mapping[str, Explainer], threshold: float, batch_size: int | None, example: int
) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point() or not len(images):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"must be a non-empty floating-point tensor (N, C, H, W), got {got}", field="images")
    if not isinstance(explainers, Mapping) or not explainers:
        raise ConfigError("must be a non-empty mapping {name: explainer}", field="explainers")
    bad = [name for name, fn in explainers.items() if not callable(fn)]
    if bad:
        raise ConfigError(f"not callable: {bad}", field="explainers")
    check_number(threshold, "threshold", inclusive=False)
    if threshold > 1:
        raise ConfigError(f"must be in (0, 1] (a Spearman correlation), got {threshold!r}", field="threshold")
    check_integer(batch_size, "batch_size", minimum=1, optional=True)
    check_integer(example, "example", minimum=0)
    if example >= len(images):
        raise ConfigError(f"must index one of the {len(images)} images, got {example}", field="example")


def _check_reference(
    reference: Mapping[str, Tensor] | None, explainers: Mapping[str, Explainer], images: Tensor
) -> dict[str, Tensor]:
    """The given trained-model maps, checked: each names a method and is ``(N, H, W)``, finite, on the images'
    device."""
    if reference is None:
        return {}
    if not isinstance(reference, Mapping):
        raise ConfigError(f"must be a mapping {{method: maps}}, got {type(reference).__name__}", field="reference")
    unknown = sorted(set(reference) - set(explainers))
    if unknown:
        raise ConfigError(f"maps for unknown method(s) {unknown}; methods: {list(explainers)}", field="reference")
    n, _, h, w = images.shape
    checked = {}
    for name, maps in reference.items():
        if not isinstance(maps, Tensor) or maps.shape != (n, h, w) or not maps.is_floating_point():
            got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise ConfigError(f"{name!r}: must be floating-point maps ({n}, {h}, {w}), got {got}", field="reference")
        if not torch.isfinite(maps).all():
            raise ConfigError(f"{name!r}: the maps hold a NaN or infinite value", field="reference")
        checked[name] = maps.detach().to(images.device)
    return checked


def _spread(values: Tensor) -> list[float]:
    """The standard deviation over images (dim 1) of each step, 0 for a single image."""
    if values.shape[1] < 2:
        return [0.0] * values.shape[0]
    return [0.0 if math.isnan(v) else v for v in values.std(dim=1).tolist()]
