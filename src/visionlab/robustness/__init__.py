"""Adversarial robustness: threat models, attacks, robust evaluation and adversarial training objectives.

Everything works on pixels in [0, 1] (every visionlab model normalizes inside), so every ``eps`` and step size
is in pixel units. ``steps`` holds the threat models (L∞ / L2 balls), ``attacks`` PGD, FGSM, the course's
original attack and an AutoAttack wrapper, ``evaluate`` robust accuracy and sweeps, ``training`` the adversarial
training objectives (drop-in replacements for :class:`visionlab.engine.ClassificationTask`), ``smoothing``
certified L2 robustness by randomized smoothing (Cohen et al. 2019; σ in pixel units too).
"""

from visionlab.robustness.attacks import (
    FGSM,
    PGD,
    Attack,
    AutoAttack,
    ascend,
    attack_context,
    check_images,
    original_attack,
)
from visionlab.robustness.evaluate import (
    SWEEP_COLUMNS,
    plot_accuracy_vs_eps,
    plot_accuracy_vs_steps,
    robust_evaluate,
    sweep,
    write_sweep,
)
from visionlab.robustness.monitor import RobustMonitor
from visionlab.robustness.smoothing import (
    ABSTAIN,
    DEFAULT_RADII,
    Certification,
    GaussianNoiseTraining,
    SmoothedClassifier,
    clopper_pearson_lower,
    noise_block,
    plot_certified_accuracy,
)
from visionlab.robustness.steps import L2Step, LinfStep, Radius, Step, default_step, make_step
from visionlab.robustness.training import (
    FGSMRSTraining,
    NFGSMTraining,
    PGDTraining,
    TRADESTraining,
    robust_accuracy_on_batch,
)

__all__ = [
    "ABSTAIN",
    "DEFAULT_RADII",
    "FGSM",
    "PGD",
    "SWEEP_COLUMNS",
    "Attack",
    "AutoAttack",
    "Certification",
    "FGSMRSTraining",
    "GaussianNoiseTraining",
    "L2Step",
    "LinfStep",
    "NFGSMTraining",
    "PGDTraining",
    "Radius",
    "RobustMonitor",
    "SmoothedClassifier",
    "Step",
    "TRADESTraining",
    "ascend",
    "attack_context",
    "check_images",
    "clopper_pearson_lower",
    "default_step",
    "make_step",
    "noise_block",
    "original_attack",
    "plot_accuracy_vs_eps",
    "plot_accuracy_vs_steps",
    "plot_certified_accuracy",
    "robust_accuracy_on_batch",
    "robust_evaluate",
    "sweep",
    "write_sweep",
]
