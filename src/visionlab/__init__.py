"""visionlab: train, evaluate, explain and attack image classifiers on PyTorch.

Data flow is one direction: dataset -> transforms (pixels in [0, 1]) -> model (whose first layer is
`visionlab.models.Normalize`) -> engine / attack / saliency. Any classifier joins it through `wrap_model`, which
puts its own preprocessing (mean/std) inside it, so every ``eps`` and step size is in pixel units:

```python
import torchvision, visionlab as vl
net = torchvision.models.resnet18(weights="IMAGENET1K_V1")  # or timm's, or your own nn.Module
model = vl.wrap_model(net, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).eval()
adversarial = vl.PGD(model, eps=4 / 255, step=1 / 255, steps=10)(images, labels)  # images: (N, 3, H, W) in [0, 1]
maps = vl.saliency(model, images, smoothgrad_samples=25)  # (N, H, W)
```

The names below are the stable surface; each lives in a subpackage (`visionlab.models`, `visionlab.data`,
`visionlab.engine`, `visionlab.robustness`, `visionlab.explain`, `visionlab.report`) that holds more. They are
imported on first use, so ``import visionlab`` (and the command line's ``--help``) does not import torch.

- models: `build_model`, `list_models`, `wrap_model` (`ImageClassifier`, `Normalize`), `load_classifier` (a
  torchvision architecture with a local weights file, or a ``FILE.py:FUNCTION`` factory), `load_checkpoint` +
  `model_from_checkpoint` for a visionlab checkpoint;
- data: `load_dataset` (a spec string such as ``"fashion-mnist"`` or ``"folder:PATH"``) -> `DataBundle`;
- training: `Trainer` with a `TrainConfig` and callbacks such as `PlotCurves`; adversarial objectives
  `PGDTraining`, `FGSMRSTraining`, `NFGSMTraining`, `TRADESTraining`; `evaluate` (clean accuracy);
- attacks: `PGD`, `FGSM`, `AutoAttack` (all `Attack`), `robust_evaluate`;
- explanations: `saliency` (vanilla gradient, SmoothGrad), `integrated_gradients`, `gradcam`, and any method by
  name through `explainer` (``vl.explainer("ig", steps=32)(model, images, target)``), drawn by `red_overlay` /
  `heatmap_overlay` and saved by `save_grid`; whether the maps mean anything: `cascading_randomization` (Adebayo
  et al.'s sanity check: does a map change once the model is random?) and `compare_orderings` (Petsiuk et al.'s
  deletion and insertion curves beside a random and an edge-detector ordering). ``visionlab.explain`` is the
  subpackage, so its ``explain`` function is ``visionlab.explain.explain``;
- the report: `load_runs`, `analyse`, `build_report`, `write_page`;
- `UserError`: the base of every error a user can fix (bad data, checkpoint or setting).
"""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing (PEP 781's spelling; type checkers and griffe read it as True).
TYPE_CHECKING = False
if TYPE_CHECKING:  # what static readers (type checkers, the API reference) see; at run time: __getattr__ below
    from typing import Any

    from visionlab.data import DataBundle, load_dataset
    from visionlab.engine import TrainConfig, Trainer, evaluate, load_checkpoint, model_from_checkpoint
    from visionlab.errors import UserError
    from visionlab.explain import (
        cascading_randomization,
        compare_orderings,
        explainer,
        gradcam,
        heatmap_overlay,
        integrated_gradients,
        red_overlay,
        saliency,
        save_grid,
    )
    from visionlab.models import ImageClassifier, Normalize, build_model, list_models, load_classifier, wrap_model
    from visionlab.report import PlotCurves, analyse, build_report, load_runs, write_page
    from visionlab.robustness import (
        FGSM,
        PGD,
        Attack,
        AutoAttack,
        FGSMRSTraining,
        NFGSMTraining,
        PGDTraining,
        TRADESTraining,
        robust_evaluate,
    )

__version__ = "0.1.0"

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AutoAttack",
    "DataBundle",
    "FGSMRSTraining",
    "ImageClassifier",
    "NFGSMTraining",
    "Normalize",
    "PGDTraining",
    "PlotCurves",
    "TRADESTraining",
    "TrainConfig",
    "Trainer",
    "UserError",
    "analyse",
    "build_model",
    "build_report",
    "cascading_randomization",
    "compare_orderings",
    "evaluate",
    "explainer",
    "gradcam",
    "heatmap_overlay",
    "integrated_gradients",
    "list_models",
    "load_checkpoint",
    "load_classifier",
    "load_dataset",
    "load_runs",
    "model_from_checkpoint",
    "red_overlay",
    "robust_evaluate",
    "saliency",
    "save_grid",
    "wrap_model",
    "write_page",
]

# The subpackage each name of __all__ is imported from on first use: the TYPE_CHECKING imports above, as data
# (tests/test_api.py checks that the two agree).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "visionlab.data": ("DataBundle", "load_dataset"),
    "visionlab.engine": ("TrainConfig", "Trainer", "evaluate", "load_checkpoint", "model_from_checkpoint"),
    "visionlab.errors": ("UserError",),
    "visionlab.explain": (
        "cascading_randomization", "compare_orderings", "explainer", "gradcam", "heatmap_overlay",
        "integrated_gradients", "red_overlay", "saliency", "save_grid",
    ),
    "visionlab.models": ("ImageClassifier", "Normalize", "build_model", "list_models", "load_classifier", "wrap_model"),
    "visionlab.report": ("PlotCurves", "analyse", "build_report", "load_runs", "write_page"),
    "visionlab.robustness": (
        "FGSM", "PGD", "Attack", "AutoAttack", "FGSMRSTraining", "NFGSMTraining", "PGDTraining", "TRADESTraining",
        "robust_evaluate",
    ),
}  # fmt: skip
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name's subpackage when the name is first read (PEP 562), then keep the name here."""
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module 'visionlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
