"""Training engine: config, trainer, evaluation, checkpoints, schedule, metrics."""

from visionlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from visionlab.engine.config import TrainConfig
from visionlab.engine.schedule import WarmupCosine, warmup_cosine_factor
from visionlab.engine.task import ClassificationTask, Objective, build_task
from visionlab.engine.trainer import (
    BEST,
    CHECKPOINT,
    Callback,
    PlotCurves,
    Trainer,
    TrainingDiverged,
    build_optimizer,
    evaluate,
    make_loader,
    model_from_checkpoint,
    select_device,
)

__all__ = [
    "BEST",
    "CHECKPOINT",
    "Callback",
    "CheckpointError",
    "ClassificationTask",
    "Objective",
    "PlotCurves",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "WarmupCosine",
    "build_optimizer",
    "build_task",
    "evaluate",
    "load_checkpoint",
    "make_loader",
    "model_from_checkpoint",
    "save_checkpoint",
    "select_device",
    "warmup_cosine_factor",
]
