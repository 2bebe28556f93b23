"""Training engine: config, trainer, evaluation, checkpoints, schedule, objectives."""

from visionlab.engine.callbacks import Callback, NullLog
from visionlab.engine.checkpoint import (
    BEST,
    CHECKPOINT,
    EMA,
    SWA,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from visionlab.engine.config import TrainConfig
from visionlab.engine.divergence import TrainingDiverged
from visionlab.engine.evaluation import evaluate
from visionlab.engine.loaders import limit, make_device_loader, make_loader
from visionlab.engine.optim import build_optimizer, param_groups
from visionlab.engine.schedule import WarmupCosine, warmup_cosine_factor
from visionlab.engine.swa import WeightAverage
from visionlab.engine.task import (
    ClassificationTask,
    EpsilonRamp,
    Objective,
    StepScheduled,
    build_monitor,
    build_task,
)
from visionlab.engine.trainer import Trainer
from visionlab.runtime import select_device

__all__ = [
    "BEST",
    "CHECKPOINT",
    "EMA",
    "SWA",
    "Callback",
    "CheckpointError",
    "ClassificationTask",
    "EpsilonRamp",
    "NullLog",
    "Objective",
    "StepScheduled",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "WarmupCosine",
    "WeightAverage",
    "build_monitor",
    "build_optimizer",
    "build_task",
    "evaluate",
    "limit",
    "load_checkpoint",
    "make_device_loader",
    "make_loader",
    "model_from_checkpoint",
    "param_groups",
    "save_checkpoint",
    "select_device",
    "warmup_cosine_factor",
]
