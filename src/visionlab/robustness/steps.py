"""Threat models as step objects: the set of allowed perturbations and how to move inside it.

In the style of MadryLab's ``robustness/attack_steps.py``: a step object knows its ball (radius ``eps``), its
step size, how to project onto the ball, how to take one ascent step and how to draw a random start. An attack
(:mod:`visionlab.robustness.attacks`) only asks it for these moves, so PGD is written once for every norm.

Units: pixels in [0, 1] (every visionlab model normalizes inside, see :class:`visionlab.models.Normalize`), so
``eps = 8/255`` means eight grey levels. Every method returns images clamped to [0, 1]. ``eps`` and the step size
are a scalar or one value per channel (a sequence of ``C`` floats, broadcast as ``(1, C, 1, 1)``); a per-channel
radius is what a ball drawn in *normalized* space becomes in pixel space (``eps_c = eps_normalized * std_c``).

Shapes: ``x`` (the clean images) and ``x_adv`` are ``(N, C, H, W)``; ``grad`` is the gradient of the attack's
objective with respect to ``x_adv`` (same shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visionlab.errors import ConfigError

__all__ = ["L2Step", "LinfStep", "Radius", "Step", "default_step", "draw_like", "make_step", "scale_radius"]

Radius = float | Sequence[float]

NORMS = ("linf", "l2")


def scale_radius(radius: Radius | torch.Tensor, factor: float) -> Radius | torch.Tensor:
    """``factor * radius`` for a scalar, per-channel sequence (a tuple back) or tensor (in float64) radius."""
    if isinstance(radius, int | float):
        return factor * radius
    if isinstance(radius, torch.Tensor):
        return factor * radius.double()
    return tuple(factor * r for r in radius)


def default_step(eps: Radius | torch.Tensor, steps: int, ratio: float = 2.5) -> Radius | torch.Tensor:
    """The PGD step size when none is given: ``ratio * eps / steps`` in pixel units, computed as
    ``eps * (ratio / steps)``, scalar or per channel like ``eps``.

    Madry et al. 2018's 2.5: over ``steps`` steps the ascent can travel 2.5 radii, so it reaches the boundary of
    the ball from any start, random or clean, and can still move along it. The one default of every PGD in
    visionlab: adversarial training (:class:`~visionlab.robustness.PGDTraining`, TRADES), the robustness sweep,
    the robust monitor and the CLI's ``attack`` / ``saliency`` / ``robustness`` commands. At 10 steps it is
    ``eps / 4``, what the monitor and the CLI used before for any step count: for another ``--steps`` the CLI's
    default step changed from ``eps / 4`` to ``2.5 eps / steps`` (5 steps: ``eps / 2``; 20 steps: ``eps / 8``).
    """
    return scale_radius(eps, ratio / steps)


def _radius(value: Radius, field: str, *, at_most: float | None = None) -> float | tuple[float, ...]:
    """Validate a scalar or per-channel radius: finite, >= 0 and (when ``at_most`` is given) <= ``at_most``."""
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist() if value.dim() else value.item()
    if isinstance(value, bool) or not isinstance(value, int | float | Sequence):
        raise ConfigError(f"must be a number or one number per channel, got {value!r}", field=field)
    values = [value] if isinstance(value, int | float) else list(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise ConfigError(f"must be a number or one number per channel, got {value!r}", field=field)
    for v in values:
        if not math.isfinite(v) or v < 0 or (at_most is not None and v > at_most):
            bound = f"in [0, {at_most:g}]" if at_most is not None else "a finite number >= 0"
            raise ConfigError(f"must be {bound} (pixel units, images in [0, 1]), got {value!r}", field=field)
    if isinstance(value, int | float):
        return float(value)
    return tuple(float(v) for v in values)


def _neg(value: float | tuple[float, ...]) -> float | tuple[float, ...]:
    return tuple(-v for v in value) if isinstance(value, tuple) else -value


def _show(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


class Step:
    """Base class of a threat model: an ``eps``-ball around the clean images intersected with [0, 1].

    Args:
        eps: radius in pixel units, scalar or per channel.
        step_size: length of one ascent step in pixel units, scalar or per channel.
    """

    norm = ""

    def __init__(self, eps: Radius, step_size: Radius) -> None:
        self.eps = _radius(eps, "eps", at_most=1.0 if self.norm == "linf" else None)
        self.step_size = _radius(step_size, "step")
        self._cache: dict[tuple, tuple] = {}

    def _values(self, like: torch.Tensor, *values: float | tuple[float, ...]) -> tuple:
        """The given settings as Python floats or ``(1, C, 1, 1)`` tensors on ``like``'s device and dtype,
        cached so that a loop makes no host-to-device copy per step."""
        key = (like.device, like.dtype, like.shape[1], *values)
        if key not in self._cache:
            for name, v in (("eps", self.eps), ("step", self.step_size)):
                if isinstance(v, tuple) and len(v) != like.shape[1]:
                    raise ConfigError(
                        f"has {len(v)} per-channel values but the images have {like.shape[1]} channels", field=name
                    )
            self._cache[key] = tuple(
                torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1) if isinstance(v, tuple) else v
                for v in values
            )
        return self._cache[key]

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The point of the ball around ``x`` (and of [0, 1]) that replaces ``x_adv``."""
        raise NotImplementedError

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One ascent step of length ``step_size`` along ``grad`` (steepest ascent for this norm), clamped to
        [0, 1]; not projected onto the ball."""
        raise NotImplementedError

    def step_project(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``project(step(x_adv, grad), x)`` fused, with one clamp to [0, 1] at the end (equal in exact
        arithmetic: both clamps move towards ``x``). Overwrites ``grad``, which PGD owns (it comes from
        ``torch.autograd.grad``), to spare allocations."""
        raise NotImplementedError

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random point of the ball around ``x``, clamped to [0, 1] (clamping moves each pixel towards ``x``,
        so the point stays in the ball). ``generator`` makes it reproducible; the global RNG otherwise."""
        raise NotImplementedError

    def settings(self) -> dict:
        return {"norm": self.norm, "eps": _show(self.eps), "step": _show(self.step_size)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={_show(self.eps)}, step_size={_show(self.step_size)})"


def draw_like(x: torch.Tensor, generator: torch.Generator | None, normal: bool) -> torch.Tensor:
    """Uniform [0, 1) or standard normal numbers of ``x``'s shape and dtype, drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    draw = torch.randn if normal else torch.rand
    return draw(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class LinfStep(Step):
    """L∞ threat model (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"):
    ``|x_adv - x| <= eps`` for every pixel (per channel when ``eps`` is per channel). The ascent step is
    ``step_size * sign(grad)``; the random start is uniform in the box."""

    norm = "linf"

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        (eps,) = self._values(x, self.eps)
        delta = (x_adv - x).clamp(min=-eps, max=eps)
        return (x + delta).clamp(0.0, 1.0)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        (alpha,) = self._values(x_adv, self.step_size)
        return (x_adv + alpha * grad.sign()).clamp(0.0, 1.0)

    def step_project(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        lo, hi, alpha = self._values(x, _neg(self.eps), self.eps, self.step_size)
        # Same operations in the same order as x_adv + alpha*sign(g) -> clamp(. - x, -eps, eps) -> clamp(x + ., 0, 1),
        # so the result is bitwise equal to the unfused form (and to torchattacks' PGD).
        out = grad.sign_().mul_(alpha).add_(x_adv).sub_(x).clamp_(min=lo, max=hi).add_(x)
        return out.clamp_(0.0, 1.0)

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        (eps,) = self._values(x, self.eps)
        noise = draw_like(x, generator, normal=False).mul_(2.0).sub_(1.0).mul_(eps)
        return noise.add_(x).clamp_(0.0, 1.0)


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm of ``(N, ...)`` as ``(N, 1, 1, 1)``."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1).view(-1, 1, 1, 1)


class L2Step(Step):
    """L2 threat model (Madry et al. 2018): ``||x_adv - x||_2 <= eps`` per example. The ascent step is
    ``step_size * grad / ||grad||_2``; the random start is uniform in the ball.

    Per-channel ``eps`` defines the ellipsoid ``||(x_adv - x) / eps||_2 <= 1`` (the L2 ball of radius ``r`` in
    normalized space when ``eps_c = r * std_c``); steps and projection then use that weighted norm (steepest
    ascent ``step/eps * eps**2 * g / ||eps * g||_2``, projection by radial shrinking), so ``step`` must be per
    channel as well and proportional to ``eps``. With scalars this is the usual L2 PGD, operation for operation
    as ``torchattacks.PGDL2``.
    """

    norm = "l2"
    tiny = 1e-10  # added to gradient norms, as torchattacks does, so a zero gradient gives a zero step

    def __init__(self, eps: Radius, step_size: Radius) -> None:
        super().__init__(eps, step_size)
        self._ratio: float | None = None
        if isinstance(self.eps, tuple) or isinstance(self.step_size, tuple):
            e, s = self.eps, self.step_size
            if not (isinstance(e, tuple) and isinstance(s, tuple) and len(e) == len(s)):
                raise ConfigError(
                    "a per-channel L2 ball needs per-channel eps and step of the same length "
                    f"(step proportional to eps), got eps={_show(e)}, step={_show(s)}",
                    field="step",
                )
            if min(e) <= 0:
                raise ConfigError(f"per-channel L2 radii must be > 0, got {list(e)}", field="eps")
            ratios = [b / a for a, b in zip(e, s, strict=True)]
            if max(ratios) - min(ratios) > 1e-9 * max(ratios):
                raise ConfigError(f"a per-channel L2 step must be proportional to eps, got {list(s)}", field="step")
            self._ratio = ratios[0]

    def _shrink(self, delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Factor in [0, 1] (shape (N, 1, 1, 1)) that brings ``delta`` into the ball."""
        (eps,) = self._values(x, self.eps)
        if self._ratio is not None:
            return _norms(delta / eps).reciprocal_().clamp_(max=1.0)
        if eps == 0:
            return torch.zeros_like(delta[:, :1, :1, :1])
        return (eps / _norms(delta)).clamp_(max=1.0)

    def _ascent(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The displacement of length ``step_size`` (in this norm) of steepest ascent along ``grad``."""
        if self._ratio is None:
            (alpha,) = self._values(x, self.step_size)
            return alpha * (grad / (_norms(grad) + self.tiny))
        (eps,) = self._values(x, self.eps)
        weighted = grad * eps
        return weighted.div_(_norms(weighted) + self.tiny).mul_(eps * self._ratio)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        return (x + delta * self._shrink(delta, x)).clamp(0.0, 1.0)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x_adv + self._ascent(grad, x_adv)).clamp(0.0, 1.0)

    def step_project(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = (x_adv + self._ascent(grad, x)).sub_(x)
        return delta.mul_(self._shrink(delta, x)).add_(x).clamp_(0.0, 1.0)

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        (eps,) = self._values(x, self.eps)
        z = draw_like(x, generator, normal=True)
        radius = draw_like(z[:, :1, :1, :1], generator, normal=False).pow_(1.0 / z[0].numel())
        return z.div_(_norms(z) + self.tiny).mul_(radius).mul_(eps).add_(x).clamp_(0.0, 1.0)


def make_step(norm: str, eps: Radius, step_size: Radius) -> Step:
    """The step object for ``norm`` (``"linf"`` or ``"l2"``, case-insensitive); :class:`ConfigError` otherwise."""
    key = norm.lower() if isinstance(norm, str) else norm
    if key == "linf":
        return LinfStep(eps, step_size)
    if key == "l2":
        return L2Step(eps, step_size)
    raise ConfigError(f"must be one of {NORMS}, got {norm!r}", field="norm")
