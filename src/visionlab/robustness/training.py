"""Adversarial training objectives, drop-in replacements for :class:`visionlab.engine.ClassificationTask`.

Each objective is called like the task, ``objective(model, images, target) -> (loss, logits)``, with the model
in train mode and images in [0, 1] (pixel units for every ``eps``). Each one first crafts adversarial examples
inside :func:`~visionlab.robustness.attacks.attack_context` (every submodule in eval mode, parameters frozen, no
parameter ``.grad`` touched, every mode and flag restored on exit), then computes the loss with train-mode
forwards; only those forwards update batch-norm running statistics. What differs is how batch norm normalizes
while the examples are crafted:

* PGD, FGSM-RS and N-FGSM (:class:`PGDTraining`, :class:`FGSMRSTraining`, :class:`NFGSMTraining`) craft with
  ``batch_stats=True``: batch-norm layers normalize with the batch's own statistics, as the training forward does,
  without updating their running statistics. Crafting against the running statistics instead let several
  GPU-search runs collapse for an epoch (BENCHMARKS.md, issue 9). Their loss is
  ``mix * criterion(clean) + (1 - mix) * criterion(adversarial)``, the forward of a term with weight 0 skipped:
  at the default ``mix = 0`` the one train-mode forward is the adversarial one; with ``0 < mix < 1`` the clean
  forward comes first; at ``mix = 1`` no attack runs.
* TRADES (:class:`TRADESTraining`) crafts fully in eval mode, batch norm on its running statistics, as the
  official implementation does (``model.eval()`` while it crafts): the clean probabilities the KL compares with
  and every ascent step. Its loss then runs the train-mode forwards clean first, adversarial second.

The adversary always maximises plain cross-entropy (TRADES: its KL term); ``criterion`` (e.g. with label
smoothing) is the training loss only. Under :class:`~torch.nn.parallel.DistributedDataParallel` the attack runs
on the unwrapped module (its forwards and backwards must not trigger the gradient sync), and two train-mode
forwards become one forward of their concatenation (:func:`_forward_pair`).

References: Madry et al. 2018 (PGD adversarial training); Wong, Rice & Kolter 2020, "Fast is better than free:
Revisiting adversarial training" (FGSM with random start); de Jorge et al. 2022, "Make Some Noise: Reliable and
Efficient Single-Step Adversarial Training" (N-FGSM); Zhang et al. 2019, "Theoretically Principled
Trade-off between Robustness and Accuracy" (TRADES).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from visionlab.checks import check_number
from visionlab.errors import ConfigError
from visionlab.robustness.attacks import (
    Attack,
    ascend,
    attack_context,
    attack_layout,
    check_count,
    check_images,
    full_precision,
    match_layout,
    to_layout,
)
from visionlab.robustness.steps import Radius, Step, default_step, draw_like, make_step, scale_radius
from visionlab.runtime.distributed import unwrap

__all__ = ["FGSMRSTraining", "NFGSMTraining", "PGDTraining", "TRADESTraining", "robust_accuracy_on_batch"]


def _weight(value: float, name: str, *, at_most: float | None = None) -> float:
    check_number(value, name)
    if at_most is not None and value > at_most:
        raise ConfigError(f"must be in [0, {at_most:g}], got {value!r}", field=name)
    return float(value)


def _scaled(radius: Radius, factor: float) -> Radius:
    """``radius`` times ``factor``; the radius itself (not a float product) at 1, so an objective outside a ramp
    attacks with exactly the radius it was given."""
    return radius if factor == 1.0 else scale_radius(radius, factor)


def _mixed_loss(
    model: nn.Module, criterion: nn.Module, images: torch.Tensor, adv: torch.Tensor | None, target: torch.Tensor,
    mix: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``mix * criterion(clean) + (1 - mix) * criterion(adv)`` with train-mode forwards (clean first), skipping
    the forward whose weight is 0. Returns the adversarial logits, or the clean ones when ``mix == 1``."""
    if mix == 1.0:
        logits = model(images)
        return criterion(logits, target), logits
    if mix == 0.0:
        logits = model(adv)
        return criterion(logits, target), logits
    clean, logits = _forward_pair(model, images, adv)
    return mix * criterion(clean, target) + (1.0 - mix) * criterion(logits, target), logits


def _forward_pair(model: nn.Module, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(first), model(second)``. Under :class:`DistributedDataParallel` the two go through one forward of
    their concatenation: the wrapper synchronises gradients once per forward-backward pair, and two forwards
    before one backward would mark every parameter ready twice. (One forward means one batch-norm batch of both
    halves; a single process keeps two separate forwards, as the reference implementations do.)"""
    if isinstance(model, DistributedDataParallel):
        both = model(torch.cat([first, second]))
        return both[: first.shape[0]], both[first.shape[0] :]
    return model(first), model(second)


class _Adversarial:
    """Shared by every objective here (PGD, FGSM-RS, N-FGSM, TRADES): the threat model, the one-time input check,
    and the cross-entropy ascent with batch statistics (:meth:`adversarial`), which TRADES replaces by its own
    KL ascent in eval mode."""

    threat: Step
    steps: int
    generator: torch.Generator | None
    _checked: bool
    radius_scale: float = 1.0

    def set_radius_scale(self, factor: float) -> None:
        """Train at ``factor`` times the configured radius, every step size scaled with it (the ε curriculum of
        :class:`visionlab.engine.EpsilonRamp`); 1 restores the configured threat model. ``factor`` in [0, 1]."""
        factor = _weight(factor, "radius_scale", at_most=1.0)
        if factor != self.radius_scale:
            self.radius_scale = factor
            self._build_threat()

    def _build_threat(self) -> None:
        """Set ``threat`` (and any other ball) from the configured radii times ``radius_scale``."""
        raise NotImplementedError

    def _check(self, images: torch.Tensor, target: torch.Tensor) -> None:
        if not self._checked:  # once: the range check syncs with the device
            check_images(images, target)
            self._checked = True

    random_start: bool

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        """Where the ascent starts: a uniform random point of the ball, or ``x`` itself."""
        return self.threat.random_init(x, self.generator) if self.random_start else x

    def adversarial(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The adversarial examples the loss trains on, detached: the ascent runs in eval mode with batch-norm
        layers on the batch's own statistics (running statistics untouched), parameters frozen, modes restored."""
        model = unwrap(model)  # the attack's forwards and backwards must not trigger DDP's gradient sync
        nhwc = attack_layout(images, None)
        x = to_layout(images, nhwc)
        with attack_context(model, channels_last=nhwc, batch_stats=True):
            start = self._start(x)
            adv = ascend(model, self.threat, x, start, self.steps, lambda z: F.cross_entropy(full_precision(z), target))
        return match_layout(adv, images)


class _MixedAdversarial(_Adversarial):
    """PGD, FGSM-RS and N-FGSM training: ``mix * criterion(clean) + (1 - mix) * criterion(adversarial)``."""

    mix: float
    criterion: nn.Module

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images, target)
        adv = None if self.mix == 1.0 else self.adversarial(model, images, target)
        return _mixed_loss(model, self.criterion, images, adv, target, self.mix)


@dataclass
class PGDTraining(_MixedAdversarial):
    """PGD adversarial training (Madry et al. 2018): train on PGD examples of the current model.

    ``loss = mix * criterion(model(x), y) + (1 - mix) * criterion(model(x_adv), y)`` where ``x_adv`` is
    ``steps``-step PGD (random start, maximising cross-entropy) in the ``eps``-ball. ``mix = 0`` is Madry's
    objective; the course blended 50/50 (``mix = 0.5``). Returned logits: those of ``x_adv`` (so running
    top-1 is the training robust accuracy), or of ``x`` when ``mix == 1`` (then no attack runs at all).

    Args:
        eps: radius in pixel units, scalar or per channel.
        steps: PGD iterations.
        step: step size in pixel units; default :func:`~visionlab.robustness.steps.default_step`,
            ``2.5 * eps / steps``.
        norm: ``"linf"`` or ``"l2"``.
        mix: weight of the clean loss, in [0, 1].
        criterion: training loss on logits (e.g. ``nn.CrossEntropyLoss(label_smoothing=0.1)``).
        random_start: start PGD at a uniform random point of the ball.
        generator: RNG of the random start (the global RNG when ``None``).
    """

    eps: Radius
    steps: int = 10
    step: Radius | None = None
    norm: str = "linf"
    mix: float = 0.0
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    random_start: bool = True
    generator: torch.Generator | None = None
    _checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.steps = check_count(self.steps, "steps")
        self._build_threat()
        self.mix = _weight(self.mix, "mix", at_most=1.0)

    def _build_threat(self) -> None:
        step = default_step(self.eps, self.steps) if self.step is None else self.step
        self.threat = make_step(self.norm, _scaled(self.eps, self.radius_scale), _scaled(step, self.radius_scale))


@dataclass
class FGSMRSTraining(_MixedAdversarial):
    """FGSM adversarial training with random start (Wong et al. 2020, "Fast is better than free"), L∞.

    ``x_adv = clamp(x + clamp(d + step * sign(grad), -eps, eps), 0, 1)`` with ``d`` uniform in ``[-eps, eps]``
    (``x + d`` clamped to [0, 1]) and ``step = 1.25 * eps`` by default; loss, ``mix`` and returned logits as for
    :class:`PGDTraining`. Watch for catastrophic overfitting (PGD accuracy on training batches collapsing while
    FGSM accuracy rises): :func:`robust_accuracy_on_batch` measures it.

    Args:
        eps: radius in pixel units, scalar or per channel.
        step: step size in pixel units; default ``1.25 * eps``.
        mix: as for :class:`PGDTraining`.
        criterion: as for :class:`PGDTraining`.
        generator: as for :class:`PGDTraining`.
    """

    eps: Radius
    step: Radius | None = None
    mix: float = 0.0
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    generator: torch.Generator | None = None
    _checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.steps, self.random_start = 1, True
        self._build_threat()
        self.mix = _weight(self.mix, "mix", at_most=1.0)

    def _build_threat(self) -> None:
        step = scale_radius(self.eps, 1.25) if self.step is None else self.step
        self.threat = make_step("linf", _scaled(self.eps, self.radius_scale), _scaled(step, self.radius_scale))


def _reach(*radii: float | tuple[float, ...]) -> float | tuple[float, ...]:
    """The sum of L∞ radii (scalars or per channel), capped at 1: a perturbation past 1 leaves [0, 1]."""
    total = torch.stack(torch.broadcast_tensors(*(torch.tensor(r, dtype=torch.float64) for r in radii))).sum(0)
    total = total.clamp(max=1.0)
    return total.item() if total.dim() == 0 else tuple(total.tolist())


@dataclass
class NFGSMTraining(_MixedAdversarial):
    """N-FGSM (de Jorge et al. 2022, "Make Some Noise"): single-step adversarial training with strong noise and
    no projection, L∞ — FGSM-RS's cost without its catastrophic overfitting.

    ``x_noisy = clamp(x + eta, 0, 1)`` with ``eta`` uniform in ``[-noise * eps, noise * eps]``, then
    ``x_adv = clamp(x_noisy + step * sign(grad_x CE(f(x_noisy), y)), 0, 1)``, *not* projected back onto the
    ``eps``-ball: the training perturbation reaches ``noise * eps + step`` (3 eps by default). The paper's
    defaults are ``noise = 2`` and ``step = eps``; loss, ``mix`` and returned logits as for :class:`PGDTraining`.

    Args:
        eps: radius in pixel units, scalar or per channel (the threat model trained against).
        step: step size in pixel units; default ``eps``.
        noise: half-width of the uniform noise as a multiple of ``eps``; default 2.
        mix: as for :class:`PGDTraining`.
        criterion: as for :class:`PGDTraining`.
        generator: as for :class:`PGDTraining`.
    """

    eps: Radius
    step: Radius | None = None
    noise: float = 2.0
    mix: float = 0.0
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    generator: torch.Generator | None = None
    _checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.steps = 1  # the start is the noise ball's random point (_start), whatever random_start says
        self.noise = _weight(self.noise, "noise")
        self._build_threat()
        self.mix = _weight(self.mix, "mix", at_most=1.0)

    def _build_threat(self) -> None:
        step = self.eps if self.step is None else self.step
        given = make_step("linf", _scaled(self.eps, self.radius_scale), _scaled(step, self.radius_scale))  # validates
        self.noise_ball = make_step("linf", _reach(scale_radius(given.eps, self.noise)), given.step_size)
        # The ascent's ball is as large as noise plus one step can go, so its projection never binds.
        self.threat = make_step("linf", _reach(self.noise_ball.eps, given.step_size), given.step_size)

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise_ball.random_init(x, self.generator)


@dataclass
class TRADESTraining(_Adversarial):
    """TRADES (Zhang et al. 2019): ``criterion(f(x), y) + beta * KL(p(x) || p(x_adv))``, batch mean.

    ``p = softmax(f)``; the KL is the official implementation's ``KLDivLoss(log p(x_adv), p(x))``, i.e.
    ``sum_k p_k(x) (log p_k(x) - log p_k(x_adv))``, with gradients through both terms. ``x_adv`` maximises the
    same KL (summed) by ``steps``-step PGD from ``x + init_std * N(0, 1)`` (projected into the ball), the clean
    probabilities computed once in eval mode. The train-mode forwards are ``f(x)`` then ``f(x_adv)``. Returned
    logits: the clean ones ``f(x)`` (the examples of the cross-entropy term). ``beta = 0`` is plain training on
    clean images (no attack runs). There is no ``mix``: ``beta`` is TRADES' trade-off between the two terms.

    Args:
        eps: radius in pixel units, scalar or per channel.
        beta: weight of the KL term (6 in the paper for CIFAR-10).
        steps: PGD iterations.
        step: step size in pixel units; default :func:`~visionlab.robustness.steps.default_step`,
            ``2.5 * eps / steps``.
        norm: ``"linf"`` or ``"l2"``.
        init_std: standard deviation of the random start (0.001 in the official code).
        criterion: loss of the clean term.
        generator: RNG of the random start.
    """

    eps: Radius
    beta: float = 6.0
    steps: int = 10
    step: Radius | None = None
    norm: str = "linf"
    init_std: float = 0.001
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    generator: torch.Generator | None = None
    _checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.steps = check_count(self.steps, "steps")
        self._build_threat()
        self.beta = _weight(self.beta, "beta")
        self.init_std = _weight(self.init_std, "init_std")

    def _build_threat(self) -> None:
        step = default_step(self.eps, self.steps) if self.step is None else self.step
        self.threat = make_step(self.norm, _scaled(self.eps, self.radius_scale), _scaled(step, self.radius_scale))

    def adversarial(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """TRADES' adversarial examples for ``images``, detached: crafted fully in eval mode (batch norm on its
        running statistics, unlike the other objectives), parameters frozen, modes restored. ``target`` is unused
        (the adversary needs no labels); it is accepted for the common signature."""
        model = unwrap(model)
        nhwc = attack_layout(images, None)
        x = to_layout(images, nhwc)
        with attack_context(model, channels_last=nhwc):
            with torch.no_grad():
                p_clean = F.softmax(full_precision(model(x)), dim=1)
            noise = draw_like(x, self.generator, normal=True).mul_(self.init_std)
            start = self.threat.project(x + noise, x)

            def kl(logits: torch.Tensor) -> torch.Tensor:
                return F.kl_div(F.log_softmax(full_precision(logits), dim=1), p_clean, reduction="sum")

            return match_layout(ascend(model, self.threat, x, start, self.steps, kl), images)

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images, target)
        if self.beta == 0.0:
            logits = model(images)
            return self.criterion(logits, target), logits
        adv = self.adversarial(model, images, target)
        clean, robust = _forward_pair(model, images, adv)
        kl = F.kl_div(
            F.log_softmax(full_precision(robust), dim=1), F.softmax(full_precision(clean), dim=1), reduction="batchmean"
        )
        return self.criterion(clean, target) + self.beta * kl, clean


def robust_accuracy_on_batch(model: nn.Module, images: torch.Tensor, target: torch.Tensor, attack: Attack) -> float:
    """Top-1 accuracy (%) of ``model`` on ``attack``'s examples for one batch, model in eval mode, every mode and
    flag restored. Meant for a catastrophic-overfitting check during FGSM training (Wong et al. 2020): a PGD
    accuracy on a training batch that collapses towards 0 while training continues signals it."""
    adv = attack(images, target)
    with attack_context(model), torch.no_grad():
        correct = (model(adv).argmax(dim=1) == target).sum()
    return 100.0 * correct.item() / max(target.shape[0], 1)
