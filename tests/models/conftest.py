"""Helpers shared by the model tests."""

from __future__ import annotations

from torch import nn


def recording_conv(calls: list) -> type[nn.Conv2d]:
    """An ``nn.Conv2d`` subclass (named ``Recording``) that appends each construction's ``(args, kwargs)`` to
    ``calls``: what a model passes to an injected ``conv_layer``, read back exactly."""

    class Recording(nn.Conv2d):
        def __init__(self, *args, **kwargs) -> None:
            calls.append((args, kwargs))
            super().__init__(*args, **kwargs)

    return Recording
