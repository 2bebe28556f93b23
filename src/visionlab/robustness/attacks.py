"""Adversarial attacks on pixel-space models: PGD (L∞ / L2), FGSM, the course's original attack, AutoAttack.

Every visionlab model takes pixels in [0, 1] and normalizes inside, so ``eps`` and step sizes here are in pixel
units and the attacked images stay in [0, 1]. :class:`Attack` owns the bookkeeping every attack needs
(``__call__``): it checks the pixel range, runs the attack with every submodule in eval mode (no batch-norm
statistic moves, dropout is off) and the parameters' ``requires_grad`` off (only input gradients are computed,
so no parameter ``.grad`` is touched), then restores each submodule's mode and each flag exactly, and returns
detached images. Subclasses implement :meth:`Attack.perturb` only.

References: Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks" (PGD);
Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples" (FGSM); Croce & Hein 2020, "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks" (AutoAttack).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from visionlab.checks import check_integer
from visionlab.errors import ConfigError
from visionlab.robustness.steps import Radius, Step, make_step
from visionlab.runtime import eval_mode

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AutoAttack",
    "ascend",
    "attack_context",
    "check_count",
    "check_images",
    "full_precision",
    "original_attack",
]

TARGET_MODES = (None, "least-likely")
LOSSES = ("ce",)
TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def attack_context(model: nn.Module, channels_last: bool = False, batch_stats: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` as an attack needs it: every submodule in eval mode, every parameter with
    ``requires_grad=False``, gradients enabled. On exit each submodule's ``training`` flag and each parameter's
    ``requires_grad`` are restored exactly as they were (a mixed train/eval model stays mixed); ``.grad``
    tensors are never touched.

    ``channels_last``: run with the 4-d weights in NHWC layout (copies swapped in as ``.data`` and the very
    same original tensors swapped back on exit, so nothing of the model changes; made with ``.to(memory_format=)``,
    which spells the NHWC strides out even for one input channel). oneDNN's CPU convolutions and pools are
    faster on that layout: PGD-10 on SimpleNet ran at 1.25x torchattacks' images/s here (2-core AVX-512 EPYC,
    batch 128). Pair it with channels-last images (:func:`attack_layout`).

    ``batch_stats``: batch-norm layers normalize with the batch's own statistics, as in the training forward
    (``track_running_stats`` switched off for the attack, so the running statistics still do not move); the
    attack then targets the function being trained rather than its lagging running-statistics version, as the
    fast-AT and PGD-AT reference implementations do. Used by adversarial training."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if batch_stats else []
    tracking = [(m, m.track_running_stats) for m in norms]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    swapped = [(p, p.data) for p in model.parameters() if channels_last and p.dim() == 4]
    with eval_mode(model):
        try:
            for m in norms:
                m.train()
                m.track_running_stats = False
            for p, _ in flags:
                p.requires_grad_(False)
            for p, data in swapped:
                p.data = data.to(memory_format=torch.channels_last)
            with torch.enable_grad():
                yield model
        finally:
            for m, track in tracking:
                m.track_running_stats = track
            for p, flag in flags:
                p.requires_grad_(flag)
            for p, data in swapped:
                p.data = data


def attack_layout(images: torch.Tensor, channels_last: bool | None) -> bool:
    """Whether an attack on ``images`` runs channels-last: ``None`` (auto) means on the CPU, where it pays."""
    if channels_last is None:
        return images.device.type == "cpu" and images.dim() == 4
    return channels_last


def to_layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``images`` in NHWC layout when ``channels_last``, else as they are. ``.to(memory_format=)``, not
    ``.contiguous(memory_format=)``: the latter leaves a one-channel batch with NCHW strides (both layouts address
    its memory alike), and the first convolution and max pool then ran NCHW (SimpleNet's first pool 18 ms vs 2 ms a
    batch of 128 on this CPU)."""
    return images.to(memory_format=torch.channels_last) if channels_last else images


def match_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (of ``like``'s shape) with ``like``'s strides where ``like`` is dense (NCHW, NHWC, or NHWC spelled
    out for one channel; else its suggested layout), so what an attack returns is laid out exactly as what it was
    given, and the model's next forward of it takes the same kernels as that of the clean batch."""
    if t.stride() == like.stride():
        return t
    return torch.empty_like(like).copy_(t)


def check_images(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``(N, C, H, W)`` batch of pixels in [0, 1] and
    ``labels`` an integer ``(N,)`` tensor. One host sync (the range check)."""
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"attack: images must be a float (N, C, H, W) tensor, got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"attack: labels must be an integer tensor of shape ({images.shape[0]},), got {labels.shape}")
    lo, hi = torch.stack(torch.aminmax(images.detach())).tolist()
    if not (lo >= 0.0 and hi <= 1.0):  # NaN fails too
        raise ValueError(
            f"attack: images must be pixels in [0, 1] (models normalize inside), got values in "
            f"[{lo:.4g}, {hi:.4g}]; pass un-normalized images"
        )


def full_precision(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32 when they are half or bfloat16 (autocast), unchanged otherwise (float64 stays)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _input_grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss / d x only (no parameter gradient is computed), as a fresh tensor the caller may overwrite."""
    # No graph at all (a model that ignores its input, its parameters frozen by the attack), or one without x.
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True) if loss.requires_grad else (None,)
    if grad is None:  # the loss does not depend on the input
        return torch.zeros_like(x)
    if not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
        grad = grad.clone()  # e.g. an expanded (stride-0) gradient, which in-place updates must not write
    return grad


def ascend(
    model: nn.Module,
    threat: Step,
    x: torch.Tensor,
    start: torch.Tensor,
    steps: int,
    objective: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``steps`` projected ascent steps on ``objective(model(x_adv))`` (a scalar to maximise) from ``start``,
    inside ``threat``'s ball around ``x``. No graph is kept between steps and no host sync happens. Call it
    inside :func:`attack_context`. Returns the last iterate, detached."""
    x_adv = start.detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad = _input_grad(objective(model(x_adv)), x_adv)
        x_adv = threat.step_project(x_adv.detach(), grad, x)
    return x_adv


class Attack:
    """Base class: ``attack(images, labels) -> adversarial images`` of the same shape, detached, in [0, 1].

    Args:
        model: a pixel-space classifier ``(N, C, H, W) -> (N, classes)`` on the images' device.
        channels_last: run the attack with the images and the model's 4-d weights in NHWC layout (the model is
            left exactly as it was; see :func:`attack_context`); ``None`` (default) = on the CPU only.

    Subclasses implement :meth:`perturb` (called inside :func:`attack_context`) and :meth:`settings`.
    """

    name = "Attack"

    def __init__(self, model: nn.Module, channels_last: bool | None = None) -> None:
        self.model = model
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        return self.run(images, labels)

    def run(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``__call__`` without the input check (and its host sync), for callers that checked already. Returns
        the adversarial images in ``images``' memory layout."""
        nhwc = attack_layout(images, self.channels_last)
        with attack_context(self.model, channels_last=nhwc):
            adv = self.perturb(to_layout(images.detach(), nhwc), labels.detach())
        return match_layout(adv.detach(), images)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The adversarial images for ``images`` (detached, in [0, 1]) and their true ``labels``."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Every setting as JSON-serializable values, with ``"name"`` first."""
        return {"name": self.name}

    def __repr__(self) -> str:
        items = [f"{k}={v!r}" for k, v in self.settings().items() if k != "name"]
        return f"{self.name}({', '.join(items)})"


def check_count(value: int, field: str) -> int:
    """``value`` if it is an integer >= 1 (never a bool), else a ConfigError naming ``field``."""
    return check_integer(value, field, minimum=1)


def _target_mode(targeted: str | torch.Tensor | TargetFn | None) -> str | torch.Tensor | TargetFn | None:
    if targeted is None or isinstance(targeted, torch.Tensor) or (callable(targeted) and not isinstance(targeted, str)):
        return targeted
    if targeted in TARGET_MODES:
        return targeted
    raise ConfigError(
        f"must be None (untargeted), 'least-likely', a tensor of target labels or a callable "
        f"(images, labels) -> targets, got {targeted!r}",
        field="targeted",
    )


def _describe_target(targeted: str | torch.Tensor | TargetFn | None) -> str | None:
    if targeted is None or isinstance(targeted, str):
        return targeted
    if isinstance(targeted, torch.Tensor):
        return f"tensor{list(targeted.shape)}"
    return f"callable:{getattr(targeted, '__name__', type(targeted).__name__)}"


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018), L∞ or L2, in pixel units on images in [0, 1].

    Untargeted, it maximises the cross-entropy of the true label; targeted, it minimises the cross-entropy of
    the target label. Each of ``steps`` iterations computes the input gradient of the mean loss over the batch,
    takes one step of ``step`` (sign of the gradient for L∞, the L2-normalized gradient for L2) and projects
    onto the ``eps``-ball around the clean images and onto [0, 1]. With ``random_start=False`` and one restart
    the result equals ``torchattacks.PGD`` / ``torchattacks.PGDL2`` (operation for operation for L∞).

    Args:
        model: pixel-space classifier.
        eps: radius in pixel units, scalar or per channel (``eps <= 1`` for L∞).
        step: step size in pixel units, scalar or per channel.
        steps: iterations (>= 1).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform random point of the ball (drawn from ``generator``, or the global
            RNG) instead of the clean images.
        restarts: independent runs from different random starts (needs ``random_start``). Per example the
            result of the first restart that fools the model is kept; if none does, the one with the highest
            loss (the objective being maximised). So restarts can only lower robust accuracy compared with the
            first run alone; restarts after the first only attack the examples not fooled yet.
        targeted: ``None`` (untargeted), ``"least-likely"`` (target = argmin of the clean logits, as the course
            code: over all classes, the true one included), a tensor of target labels ``(N,)`` for the batch it
            is called with, or a callable ``(images, labels) -> targets``.
        early_stop: freeze each example at the first iterate that fools the model (misclassified; the target
            predicted when targeted), iterate 0 (the start) included, and attack only the others further. See
            below for what this changes.
        loss: the loss maximised; only ``"ce"`` (cross-entropy) for now.
        generator: ``torch.Generator`` for the random starts (reproducible runs).
        channels_last: see :class:`Attack` (default: on the CPU).

    What ``early_stop`` changes: without it the *last* iterate is returned, which may have stopped fooling the
    model after an earlier iterate did (PGD does not increase the loss monotonically); with it the first fooling
    iterate is returned. Examples never fooled follow the same trajectory either way (up to float rounding of a
    smaller batch, in eval mode where examples do not interact). Hence early-stop robust top-1 accuracy is <= the
    all-steps robust top-1 accuracy: both are upper bounds of the true robust accuracy, early stop the tighter
    or equal one. But the returned examples are *barely* adversarial: their loss, perturbation size and
    confidence are lower, and robust top-5 accuracy can be higher than without early stop; do not compare those
    across the two settings. It costs one host sync per step (to shrink the batch) and saves the forward and
    backward passes of the frozen examples. ``settings()["early_stop"]`` records that it was used.
    """

    name = "PGD"

    def __init__(
        self,
        model: nn.Module,
        eps: Radius,
        step: Radius,
        steps: int = 10,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        targeted: str | torch.Tensor | TargetFn | None = None,
        early_stop: bool = False,
        loss: str = "ce",
        generator: torch.Generator | None = None,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__(model, channels_last)
        self.threat = make_step(norm, eps, step)
        self.steps = check_count(steps, "steps")
        self.restarts = check_count(restarts, "restarts")
        if self.restarts > 1 and not random_start:
            raise ConfigError("restarts > 1 need random_start=True (otherwise every restart is the same run)",
                              field="restarts")  # fmt: skip
        self.random_start = bool(random_start)
        self.targeted = _target_mode(targeted)
        self.early_stop = bool(early_stop)
        if loss not in LOSSES:
            raise ConfigError(f"must be one of {LOSSES}, got {loss!r}", field="loss")
        self.loss = loss
        self.generator = generator

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name, **self.threat.settings(), "steps": self.steps, "random_start": self.random_start,
            "restarts": self.restarts, "targeted": _describe_target(self.targeted), "early_stop": self.early_stop,
            "loss": self.loss,
        }  # fmt: skip

    def goal(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The labels the loss is computed against: the true labels, or the targets when targeted."""
        if self.targeted is None:
            return labels
        if isinstance(self.targeted, str):  # "least-likely"
            with torch.no_grad():
                return self.model(images).argmin(dim=1)
        t = self.targeted if isinstance(self.targeted, torch.Tensor) else self.targeted(images, labels)
        if t.shape != labels.shape:
            raise ValueError(f"PGD: targets have shape {tuple(t.shape)}, expected {tuple(labels.shape)}")
        return t.to(device=labels.device, dtype=torch.long)

    def _fooled(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        hit = logits.argmax(dim=1) == goal
        return hit if self.targeted is not None else ~hit

    def _objective(self, goal: torch.Tensor, n: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The scalar maximised: (-)cross-entropy, averaged over the batch (over ``n`` examples if given)."""
        sign = -1.0 if self.targeted is not None else 1.0
        if n is None:
            return lambda logits: sign * F.cross_entropy(full_precision(logits), goal)
        return lambda logits: sign * F.cross_entropy(full_precision(logits), goal, reduction="sum") / n

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        goal = self.goal(images, labels)
        best: dict[str, torch.Tensor] | None = None
        for _ in range(self.restarts):
            start = self.threat.random_init(images, self.generator) if self.random_start else images
            if best is None:
                adv = self._run(images, start, goal)
                if self.restarts == 1:
                    return adv
                best = self._score(adv, goal)
                continue
            todo = (~best["fooled"]).nonzero().squeeze(1)  # host sync, once per restart
            if todo.numel() == 0:
                break
            adv = self._run(images[todo], start[todo], goal[todo])
            self._keep(best, todo, self._score(adv, goal[todo]))
        assert best is not None
        return best["x"]

    def _run(self, x: torch.Tensor, start: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        if self.early_stop:
            return self._run_early_stop(x, start, goal)
        return ascend(self.model, self.threat, x, start, self.steps, self._objective(goal))

    def _score(self, adv: torch.Tensor, goal: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            logits = self.model(adv)
        sign = -1.0 if self.targeted is not None else 1.0
        loss = sign * F.cross_entropy(full_precision(logits), goal, reduction="none")
        return {"x": adv, "fooled": self._fooled(logits, goal), "loss": loss}

    @staticmethod
    def _keep(best: dict[str, torch.Tensor], todo: torch.Tensor, new: dict[str, torch.Tensor]) -> None:
        """Per example of ``todo`` (none fooled yet): take the new run's result if it fools or has a higher loss."""
        take = new["fooled"] | (new["loss"] > best["loss"][todo])
        rows = todo[take]
        for key in ("x", "fooled", "loss"):
            best[key][rows] = new[key][take]

    def _run_early_stop(self, x: torch.Tensor, start: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """PGD that freezes each example at its first fooling iterate; the loss is scaled by the full batch size,
        so the other examples get the same gradients as in :func:`ascend`."""
        out = start.detach().clone()
        objective = self._objective(goal, n=x.shape[0])  # rebuilt below when the batch shrinks
        active = torch.arange(x.shape[0], device=x.device)
        x_adv = start.detach()
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            logits = self.model(x_adv)
            fooled = self._fooled(logits.detach(), goal)
            if fooled.any():  # host sync, once per step
                keep = ~fooled
                out[active[fooled]] = x_adv.detach()[fooled]
                active, x, goal = active[keep], x[keep], goal[keep]
                if active.numel() == 0:
                    return out
                objective = self._objective(goal, n=out.shape[0])
                grad = _input_grad(objective(logits[keep]), x_adv)[keep]
                x_adv = x_adv.detach()[keep]
            else:
                grad = _input_grad(objective(logits), x_adv)
                x_adv = x_adv.detach()
            x_adv = self.threat.step_project(x_adv, grad, x)
        out[active] = x_adv
        return out


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015): one PGD step of size ``eps`` from the clean images (no
    random start), so the step ends on the boundary of the ball (then clamped to [0, 1]).

    ``norm="linf"`` (default) is Goodfellow's ``clamp(x + eps * sign(grad_x CE), 0, 1)``, as ``torchattacks.FGSM``;
    ``norm="l2"`` is the L2 fast gradient method, ``clamp(x + eps * g / ||g||_2, 0, 1)`` per example, as one step
    of ``torchattacks.PGDL2`` with ``alpha = eps``. ``eps`` in pixel units, scalar or per channel; ``targeted`` as
    for :class:`PGD` (then one step down the target's cross-entropy)."""

    name = "FGSM"

    def __init__(
        self, model: nn.Module, eps: Radius, targeted: str | torch.Tensor | TargetFn | None = None, norm: str = "linf"
    ) -> None:
        super().__init__(model, eps=eps, step=eps, steps=1, norm=norm, random_start=False, targeted=targeted)


def _find_normalize(model: nn.Module) -> nn.Module:
    normalize = getattr(model, "normalize", None)
    if normalize is None:
        normalize = next((m for m in model.modules() if type(m).__name__ == "Normalize"), None)
    if normalize is None or not hasattr(normalize, "std"):
        raise ValueError("original_attack: the model has no Normalize layer (model.normalize.std) to size eps with")
    return normalize


def original_attack(model: nn.Module) -> PGD:
    """The course's original evaluation attack, translated to pixel space.

    The course attacked in normalized space ``z = (x - mean) / std``: L∞ PGD, 10 steps of 0.01, radius 0.1, no
    random start, least-likely target (argmin of the clean logits), i.e. ``z <- clip(z - 0.01 * sign(grad_z
    CE(f(z), t)), z0 - 0.1, z0 + 0.1)``. Since ``grad_z = std * grad_x`` and ``std > 0``, the signs agree and
    this is L∞ PGD in pixels with per-channel ``eps_c = 0.1 * std_c`` and ``step_c = 0.01 * std_c`` (read from
    ``model.normalize.std``). One addition: pixels are clamped to [0, 1] (valid images), which the normalized-space
    loop did not do; away from the [0, 1] bounds the two are identical.
    """
    std = _find_normalize(model).std.flatten().tolist()
    return PGD(
        model, eps=[0.1 * s for s in std], step=[0.01 * s for s in std], steps=10, norm="linf",
        random_start=False, targeted="least-likely",
    )  # fmt: skip


class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020), version ``"standard"``: APGD-CE, APGD-T, FAB-T and Square, run by
    ``torchattacks.AutoAttack`` on the pixel-space model (our models normalize inside, so no normalization is
    given to torchattacks). Each attack only attacks the examples the previous ones did not fool; examples that
    resist all four are returned unchanged.

    Args:
        model: pixel-space classifier with ``n_classes`` outputs.
        eps: one scalar radius in pixel units (torchattacks takes no per-channel radius).
        norm: ``"linf"`` or ``"l2"``.
        n_classes: number of classes of the model (the targeted attacks use the top ``n_classes - 1``).
        seed: seed of the attacks' random starts. torchattacks reseeds the global RNG with it; this wrapper
            restores the global RNG state afterwards.
        version: only ``"standard"``.

    Needs the ``torchattacks`` package (``pip install 'visionlab[robust]'``); without it the constructor raises
    a :class:`~visionlab.errors.ConfigError` saying so, before any work is done.
    """

    name = "AutoAttack"

    def __init__(
        self, model: nn.Module, eps: float, norm: str = "linf", n_classes: int = 10, seed: int = 0,
        version: str = "standard",
    ) -> None:  # fmt: skip
        super().__init__(model)
        if importlib.util.find_spec("torchattacks") is None:
            raise ConfigError(
                "autoattack needs the torchattacks package, which is not installed: pip install 'visionlab[robust]'",
                field="attack",
            )
        if isinstance(eps, list | tuple) or (isinstance(eps, torch.Tensor) and eps.numel() != 1):
            raise ConfigError(
                f"AutoAttack takes one scalar eps (torchattacks has no per-channel radius), got {eps!r}", field="eps"
            )
        if isinstance(eps, torch.Tensor):
            eps = eps.item()  # one element: a scalar for torchattacks, not a 1-channel tuple
        self.threat = make_step(norm, eps, eps)
        if version != "standard":
            raise ConfigError(f"only 'standard' is supported, got {version!r}", field="version")
        self.version = version
        self.n_classes = check_count(n_classes, "n_classes")
        if self.n_classes < 2:
            raise ConfigError(f"must be >= 2, got {n_classes}", field="n_classes")
        self.seed = check_integer(seed, "seed")

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name, "norm": self.threat.norm, "eps": self.threat.eps, "version": self.version,
            "n_classes": self.n_classes, "seed": self.seed,
        }  # fmt: skip

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torchattacks

        norm = {"linf": "Linf", "l2": "L2"}[self.threat.norm]
        attack = torchattacks.AutoAttack(
            self.model, norm=norm, eps=self.threat.eps, version=self.version, n_classes=self.n_classes, seed=self.seed
        )
        attack.set_device(images.device)
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return attack(images, labels)
