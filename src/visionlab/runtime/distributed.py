"""Distributed data parallel on PyTorch's own engine: ``torch.distributed`` process groups (gloo on CPU, NCCL
on GPU) and :class:`~torch.nn.parallel.DistributedDataParallel`, launched by ``torchrun``.

``torchrun --nproc_per_node N -m visionlab train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` (and the rendezvous address) in their environment; :func:`init_distributed` reads them and joins
the group. A plain ``visionlab train`` has none of them and runs as a world of one: every collective below is
then the identity, so the single-process code path is the distributed one with ``world_size == 1``.

What the trainer builds on this (see :class:`visionlab.engine.Trainer` and :mod:`visionlab.engine.loaders`):

* ``batch_size`` is the *global* batch: each of N ranks trains on ``batch_size / N`` images per step. All ranks
  share one data-order generator, draw the same global permutation and take their own slice of each global
  batch (:class:`ShardedBatchSampler`, :class:`~visionlab.data.memory.InMemoryLoader`'s ``shard``), so the
  steps per epoch, the learning-rate schedule and the images seen per step do not depend on N — except on a
  training set no larger than one global batch, whose single step takes its largest multiple of N images
  (:func:`training_batches`).
* Evaluation shards the dataset by ``rank::N`` — no padding, no duplicate — and sums exact counts
  (:meth:`DistContext.all_reduce`), so metrics equal a single process's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Sampler, Subset

from visionlab.errors import ConfigError
from visionlab.runtime.device import select_device

__all__ = [
    "DistContext",
    "ShardedBatchSampler",
    "current_context",
    "default_workers",
    "init_distributed",
    "shard_dataset",
    "training_batches",
    "unwrap",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its node.

    The default is a world of one (no process group): every method is then the identity or a no-op.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether there are other processes to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that names the run directory and writes logs, checkpoints and plots."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every rank, in place (and returned)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (any picklable value) on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's own random streams: ``seed`` itself on rank 0 (a world of one keeps the
        single-process streams), spread apart by a large prime on the others."""
        return (seed + 1_000_003 * self.rank) % 2**63

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            dist.barrier()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in :class:`DistributedDataParallel` (gradients averaged over ranks during backward), or
        ``model`` itself in a world of one. Parameters that do not require grad (a frozen backbone) are left out
        of the gradient buckets: wrap again when that changes."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a :class:`DistributedDataParallel` wrapper (``model`` itself otherwise): what
    checkpoints store, and what attacks run on (their extra forwards and input-gradient backwards must not
    trigger the wrapper's gradient synchronisation)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def default_workers(limit: int = 4) -> int:
    """DataLoader worker processes for each process when none are asked for: ``min(limit, cpus // local)``.

    ``cpus`` are the CPUs this process may run on (``os.sched_getaffinity``: a container's or ``taskset``'s share,
    not the machine's count; ``os.cpu_count()`` where that call does not exist), and ``local`` the processes
    torchrun starts on this node (``LOCAL_WORLD_SIZE``; 1 without torchrun), which share them. More workers than
    that only queue for the same cores, and PyTorch's DataLoader warns when one process asks for more than its
    CPUs. On 2 CPUs: 2 workers, or 1 for each of two torchrun processes; 0 (load in the process itself) when the
    processes outnumber the CPUs.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return min(limit, cpus // max(1, _env_int("LOCAL_WORLD_SIZE") or 1))


def current_context() -> DistContext:
    """The context of the process group this process has joined (:func:`init_distributed`), else a world of
    one."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK") or 0)


def init_distributed(device: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes in the environment, and pick this rank's device.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is initialised: a world of one on
    ``select_device(device)``. Otherwise the backend is NCCL when the device is CUDA (each rank on
    ``cuda:LOCAL_RANK``) and gloo on the CPU; an already initialised default group is reused.
    """
    world = _env_int("WORLD_SIZE")
    if world is None or world <= 1:
        return DistContext(), select_device(device)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None:
        raise ConfigError(f"WORLD_SIZE={world} but no RANK in the environment: launch with torchrun")
    local_rank = rank if local_rank is None else local_rank
    base = select_device(device)
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} CUDA devices: "
                "--nproc_per_node must not exceed the GPUs per node",
                field="device",
            )
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)
    return ctx, base


def shard_dataset(dataset: Dataset, ctx: DistContext) -> Dataset:
    """This rank's share of ``dataset`` for evaluation: items ``rank, rank + N, ...`` — every item counted by
    exactly one rank, none padded or repeated (unlike ``DistributedSampler``, which pads to equal shards)."""
    if not ctx.enabled:
        return dataset
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))


def local_batch_size(batch_size: int, ctx: DistContext) -> int:
    """Images per rank per step of a global ``batch_size``; it must split evenly."""
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"{batch_size} is the global batch, split over {ctx.world_size} processes: it must be a multiple of "
            f"{ctx.world_size}",
            field="batch_size",
        )
    return batch_size // ctx.world_size


def training_batches(n: int, batch_size: int, ctx: DistContext) -> tuple[int, bool]:
    """``(global batch, drop_last)`` of an epoch over ``n`` training images with ``batch_size`` images a step.

    A ragged last batch is dropped, unless it is the only one (``n <= batch_size``: a single step of every image).
    Several ranks must all take that single step with equal slices, so there the global batch shrinks to ``n``
    rounded down to a multiple of ``world_size`` (each rank ``n // world_size`` images; the fewer than
    ``world_size`` left over are dropped, as a ragged batch is). Raises :class:`ConfigError` when ``batch_size``
    does not split evenly, or when ``n < world_size`` (a rank would have nothing to train on).
    """
    local_batch_size(batch_size, ctx)
    if n > batch_size or not ctx.enabled:
        return batch_size, n > batch_size
    if n < ctx.world_size:
        images = f"{n} training image" + ("" if n == 1 else "s")
        raise ConfigError(
            f"{images} for {ctx.world_size} processes: distributed training needs at least {ctx.world_size} "
            "(one per process)",
            field="limit_train",
        )
    return n - n % ctx.world_size, True


class ShardedBatchSampler(Sampler[list[int]]):
    """Training batches of this rank: each epoch one permutation of ``range(n)`` drawn from ``generator`` (the
    same on every rank), cut into global batches of ``batch_size`` (a ragged last one dropped when
    ``drop_last``), of which this rank takes slice ``rank`` of ``world_size`` equal slices.

    One ``randperm`` per epoch is all it draws from ``generator`` (the DataLoader's ``RandomSampler`` draws two), and
    every rank draws it, so the generator's state — which checkpoints store — is the same on every rank.
    """

    def __init__(
        self, n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool, ctx: DistContext | None = None
    ) -> None:
        self.ctx = ctx or DistContext()
        self.n, self.batch_size, self.generator, self.drop_last = n, batch_size, generator, drop_last
        self.local = local_batch_size(batch_size, self.ctx)
        if self.ctx.enabled and not drop_last:
            raise ValueError("sharded training batches need drop_last=True (every rank must take the same steps)")

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        lo = self.ctx.rank * self.local  # a world of one: the whole batch (a ragged last one included)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size][lo : lo + self.local]
