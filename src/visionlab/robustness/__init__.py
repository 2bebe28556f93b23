"""Adversarial robustness: threat models, attacks, robust evaluation and adversarial training objectives.

Everything works on pixels in [0, 1] (every visionlab model normalizes inside), so every ``eps`` and step size
is in pixel units. ``steps`` holds the threat models (L∞ / L2 balls), ``attacks`` PGD, FGSM, the course's
original attack and an AutoAttack wrapper, ``evaluate`` robust accuracy and sweeps, ``training`` the adversarial
training objectives (drop-in replacements for :class:`visionlab.engine.ClassificationTask`), ``corruptions`` the 15
common corruptions of ImageNet-C and ``corruption_eval`` accuracy and corruption error (mCE) under them, ``smoothing``
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
from visionlab.robustness.corruption_eval import (
    CORRUPTION_COLUMNS,
    corrupted_batches,
    corruption_accuracies,
    corruption_accuracy,
    corruption_errors,
    corruption_rows,
    plot_corruption_heatmap,
    write_corruptions,
)
from visionlab.robustness.corruptions import (
    CORRUPTION_FAMILIES,
    CORRUPTIONS,
    MIN_SIDE,
    SEVERITIES,
    CorruptedDataset,
    check_corruptions,
    check_severities,
    corrupt,
    image_seed,
    imagecorruptions_module,
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
    default_batch,
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
    "CORRUPTIONS",
    "CORRUPTION_COLUMNS",
    "CORRUPTION_FAMILIES",
    "DEFAULT_RADII",
    "FGSM",
    "MIN_SIDE",
    "PGD",
    "SEVERITIES",
    "SWEEP_COLUMNS",
    "Attack",
    "AutoAttack",
    "Certification",
    "CorruptedDataset",
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
    "check_corruptions",
    "check_images",
    "check_severities",
    "clopper_pearson_lower",
    "corrupt",
    "corrupted_batches",
    "corruption_accuracies",
    "corruption_accuracy",
    "corruption_errors",
    "corruption_rows",
    "default_batch",
    "default_step",
    "image_seed",
    "imagecorruptions_module",
    "make_step",
    "noise_block",
    "original_attack",
    "plot_accuracy_vs_eps",
    "plot_accuracy_vs_steps",
    "plot_certified_accuracy",
    "plot_corruption_heatmap",
    "robust_accuracy_on_batch",
    "robust_evaluate",
    "sweep",
    "write_corruptions",
    "write_sweep",
]
