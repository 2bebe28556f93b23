"""The run-time floor every other floor of the package may use; it imports nothing of visionlab above
:mod:`visionlab.errors`.

* :mod:`~visionlab.runtime.modes`: :func:`eval_mode`, the one way analyses put a model in eval mode and give
  every submodule its own mode back; :func:`channels_last_copy`, an NHWC copy for analyses that run a model
  thousands of times.
* :mod:`~visionlab.runtime.device`: device selection, the autocast context, and the up-front checks of amp on
  the CPU and of ``torch.compile``'s backend.
* :mod:`~visionlab.runtime.distributed`: where this process stands in a ``torchrun`` job (:class:`DistContext`)
  and the sharding of data over its ranks.
* :mod:`~visionlab.runtime.metrics`: top-k counts, running statistics summed exactly over ranks, the time a loop
  waits for its data, and the run directory's metrics log.
"""

from visionlab.runtime.device import (
    AMP_CPU_WARNING,
    amp_dtype,
    autocast,
    check_compile,
    cpu_has_native_bf16,
    needs_loss_scaling,
    select_device,
)
from visionlab.runtime.distributed import (
    DistContext,
    ShardedBatchSampler,
    current_context,
    default_workers,
    init_distributed,
    shard_dataset,
    training_batches,
    unwrap,
)
from visionlab.runtime.metrics import MetricsLog, RunningStats, WaitTimer, read_metrics, topk_correct
from visionlab.runtime.modes import channels_last_copy, eval_mode

__all__ = [
    "AMP_CPU_WARNING",
    "DistContext",
    "MetricsLog",
    "RunningStats",
    "ShardedBatchSampler",
    "WaitTimer",
    "amp_dtype",
    "autocast",
    "channels_last_copy",
    "check_compile",
    "cpu_has_native_bf16",
    "current_context",
    "default_workers",
    "eval_mode",
    "init_distributed",
    "needs_loss_scaling",
    "read_metrics",
    "select_device",
    "shard_dataset",
    "topk_correct",
    "training_batches",
    "unwrap",
]
