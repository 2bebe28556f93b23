"""The errors a user can fix, under one base class.

Library code raises a subclass of :class:`UserError` when the user is at fault (a bad dataset, checkpoint or
configuration value); the message describes the problem in the library's terms (a file and line, a config
field and its allowed range), never a command-line flag. The command line turns a ``UserError`` into one line
and exit status 2, adding the flag where it knows it. Any other exception is a bug in visionlab and surfaces
with its traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ModelLoadError",
    "RunDirError",
    "UserError",
    "WeightsError",
]


class UserError(Exception):
    """Base class: something the user gave (data, checkpoint, configuration) is wrong; the message says what."""


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or inconsistent.

    Args:
        message: what is wrong, in the configuration's terms (e.g. ``"must be in [0, 1), got 2.0"``).
        field: the :class:`~visionlab.engine.TrainConfig` field (or other option name) at fault, when one is;
            the command line maps it onto its flag.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.field}: {message}" if self.field else message


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing, malformed or inconsistent; the message names the file (and line)."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, truncated, unsafe or not a visionlab checkpoint; the message names the file."""


class RunDirError(UserError, ValueError):
    """A path given as a run directory is missing or holds no run (no ``config.yaml``, no ``metrics.jsonl``), or
    one of its files is malformed; the message names the path."""


class WeightsError(CheckpointError):
    """A pretrained-weights file is missing (not in the torch hub cache), fails its SHA-256 check, cannot be read,
    or does not fit the model (wrong keys or shapes); the message names the file (and where to put it)."""


class ModelLoadError(ConfigError):
    """A classifier from outside visionlab cannot be built or loaded: an unknown torchvision architecture, a
    factory file that is missing, lacks the function, raises or returns no ``nn.Module``, weights that do not fit
    the network, statistics that do not fit its input, or a network whose output does not fit the data.

    ``field`` names the input at fault, in :func:`visionlab.models.load_classifier`'s terms (``arch``,
    ``factory``, ``weights``, ``mean``, ``std``, ``transforms_of``); the message names the file.
    """
