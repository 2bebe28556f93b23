"""``runtime/distributed.py`` in one process, value by value: the world-of-N arithmetic, the collectives' calls
through a recording stand-in for ``torch.distributed`` (a world of two seen from one rank), torchrun's
environment, the DDP wrapper's arguments, a real one-process gloo group for ``unwrap`` and ``current_context``,
evaluation shards and sharded training batches, and the default number of DataLoader workers. The spawned
two-process training runs are in ``tests/engine/test_ddp_training.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.errors import ConfigError
from visionlab.runtime import distributed
from visionlab.runtime.distributed import (
    DistContext,
    ShardedBatchSampler,
    current_context,
    default_workers,
    init_distributed,
    local_batch_size,
    shard_dataset,
    training_batches,
    unwrap,
)

CPU = torch.device("cpu")


class FakeDist:
    """``torch.distributed`` as rank ``rank`` of a world of two sees it, with the real functions' defaults; every
    call is recorded. The other rank holds the same tensors (a sum doubles them) and, as objects, ``"rank N's"``."""

    class ReduceOp:
        SUM = "SUM"

    def __init__(self, *, initialized: bool = True, rank: int = 1) -> None:
        self.initialized, self.rank, self.calls = initialized, rank, []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self.initialized

    def get_rank(self) -> int:
        return self.rank

    def get_world_size(self) -> int:
        return 2

    def init_process_group(self, backend: str | None = None, **kw: Any) -> None:
        self.calls.append(("init_process_group", backend, kw))
        self.initialized = True

    def all_reduce(self, tensor: torch.Tensor, op: Any = ReduceOp.SUM, group: Any = None) -> None:
        assert op == self.ReduceOp.SUM and group is None
        self.calls.append(("all_reduce", tensor.tolist()))
        tensor.mul_(2)

    def broadcast_object_list(self, object_list: list, src: int | None = None, group: Any = None) -> None:
        if src is None:
            raise ValueError("Either src or group_src must be specified")
        self.calls.append(("broadcast_object_list", list(object_list), src))
        if src != self.rank:
            object_list[:] = [f"rank {src}'s"] * len(object_list)

    def all_gather_object(self, object_list: list, obj: Any, group: Any = None) -> None:
        self.calls.append(("all_gather_object", list(object_list), obj))
        object_list[:] = [obj if r == self.rank else f"rank {r}'s" for r in range(len(object_list))]

    def barrier(self, group: Any = None) -> None:
        self.calls.append(("barrier",))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDist:
    fake = FakeDist()
    monkeypatch.setattr(distributed, "dist", fake)
    return fake


def _no_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------------------ DistContext
def test_a_world_of_one_is_the_default_and_is_main_without_peers() -> None:
    one = DistContext()
    assert (one.rank, one.world_size, one.local_rank) == (0, 1, 0)
    assert (one.enabled, one.is_main) == (False, True)
    assert (DistContext(0, 2).enabled, DistContext(0, 2).is_main) == (True, True)
    assert (DistContext(1, 2).enabled, DistContext(1, 2).is_main) == (True, False)
    assert DistContext(2, 3).enabled and not DistContext(2, 3).is_main


def test_a_world_of_one_makes_no_call(fake: FakeDist) -> None:
    one, tensor = DistContext(), torch.tensor([1.0, 2.0])
    assert one.all_reduce(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    assert one.broadcast("mine", src=1) == "mine"
    assert one.all_gather("mine") == ["mine"]
    one.barrier()
    model = nn.Linear(2, 2)
    assert one.wrap(model, CPU) is model
    assert fake.calls == []


def test_the_collectives_of_a_world_of_two(fake: FakeDist) -> None:
    second, tensor = DistContext(rank=1, world_size=2), torch.tensor([1.0, 2.0])
    assert second.all_reduce(tensor) is tensor and tensor.tolist() == [2.0, 4.0]  # summed in place
    assert second.broadcast("mine") == "rank 0's"  # src 0 by default
    assert second.broadcast("mine", src=1) == "mine"
    assert second.all_gather("mine") == ["rank 0's", "mine"]
    second.barrier()
    assert fake.calls == [
        ("all_reduce", [1.0, 2.0]),
        ("broadcast_object_list", ["mine"], 0),
        ("broadcast_object_list", ["mine"], 1),
        ("all_gather_object", [None, None], "mine"),
        ("barrier",),
    ]


def test_rank_seeds_are_spread_by_a_large_prime_modulo_2_to_the_63() -> None:
    assert DistContext().rank_seed(5) == 5
    assert DistContext(1, 2).rank_seed(5) == 1_000_008
    assert DistContext(2, 3).rank_seed(7) == 2_000_013
    assert DistContext(1, 2).rank_seed(2**63 - 1) == 1_000_002  # wraps around: a valid torch seed


class RecordingDDP:
    """Stands in for ``DistributedDataParallel``: keeps what it was built with; the output device resolved as DDP
    does (``device_ids[0]`` when only the device ids are given)."""

    def __init__(self, module: nn.Module, device_ids: list[int] | None = None, output_device: int | None = None):
        self.module, self.device_ids = module, device_ids
        self.output_device = device_ids[0] if output_device is None and device_ids else output_device


def test_ddp_is_built_on_the_ranks_cuda_device_or_without_devices_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "DistributedDataParallel", RecordingDDP)
    model, world = nn.Linear(2, 2), DistContext(1, 2, local_rank=1)
    on_cpu = world.wrap(model, CPU)
    assert (on_cpu.module, on_cpu.device_ids, on_cpu.output_device) == (model, None, None)
    on_gpu = world.wrap(model, torch.device("cuda", 1))
    assert (on_gpu.module, on_gpu.device_ids, on_gpu.output_device) == (model, [1], 1)


def test_a_real_one_process_group_unwrap_and_current_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    _no_torchrun(monkeypatch)
    assert current_context() == DistContext()  # no group joined
    model = nn.Linear(2, 2)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        wrapped = DistContext(0, 2).wrap(model, CPU)  # a world "of two" over the group of one: a real DDP
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel) and wrapped.module is model
        assert unwrap(wrapped) is model and unwrap(model) is model
        assert current_context() == DistContext(0, 1, 0)
        monkeypatch.setenv("LOCAL_RANK", "3")
        assert current_context() == DistContext(0, 1, 3)
    finally:
        dist.destroy_process_group()
    assert current_context() == DistContext()


def test_the_context_of_a_joined_group_reads_rank_world_and_local_rank(
    fake: FakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_torchrun(monkeypatch)
    assert current_context() == DistContext(1, 2, 0)  # LOCAL_RANK unset: 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert current_context() == DistContext(1, 2, 1)
    fake.initialized = False
    assert current_context() == DistContext()


# ------------------------------------------------------------------------------------------ torchrun's environment
def test_environment_integers_are_read_or_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    assert distributed._env_int("RANK") is None
    monkeypatch.setenv("RANK", "12")
    assert distributed._env_int("RANK") == 12
    monkeypatch.setenv("RANK", "1.5")
    with pytest.raises(ConfigError) as info:
        distributed._env_int("RANK")
    assert str(info.value) == "environment variable RANK='1.5' is not an integer (set by torchrun)"
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("world", [None, "1", "0"])
def test_without_a_world_of_several_nothing_is_joined(fake: FakeDist, monkeypatch, world: str | None) -> None:
    _no_torchrun(monkeypatch)
    fake.initialized = False
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("RANK", "1")
    assert init_distributed("cpu") == (DistContext(), CPU)
    assert fake.calls == []


def test_the_default_device_is_chosen_automatically(fake: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_torchrun(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert init_distributed() == (DistContext(), CPU)


def test_a_cpu_world_joins_gloo_and_takes_its_rank_from_the_group(fake: FakeDist, monkeypatch) -> None:
    _no_torchrun(monkeypatch)
    fake.initialized = False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # no LOCAL_RANK: the rank
    assert init_distributed("cpu") == (DistContext(1, 2, 1), CPU)
    assert fake.calls == [("init_process_group", "gloo", {})]
    monkeypatch.setenv("LOCAL_RANK", "0")  # given, even 0, it is kept
    fake.calls.clear()
    assert init_distributed("cpu") == (DistContext(1, 2, 0), CPU)
    assert fake.calls == []  # the group already joined is reused


def test_a_world_without_a_rank_is_refused(fake: FakeDist, monkeypatch) -> None:
    _no_torchrun(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as info:
        init_distributed("cpu")
    assert str(info.value) == "WORLD_SIZE=2 but no RANK in the environment: launch with torchrun"


def test_a_cuda_world_puts_each_rank_on_its_local_gpu(fake: FakeDist, monkeypatch) -> None:
    _no_torchrun(monkeypatch)
    fake.initialized = False
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed("cuda") == (DistContext(1, 2, 1), torch.device("cuda", 1))
    assert chosen == [torch.device("cuda", 1)]
    assert fake.calls == [("init_process_group", "nccl", {})]
    monkeypatch.setenv("LOCAL_RANK", "2")  # a third process on a node of two GPUs
    with pytest.raises(ConfigError) as info:
        init_distributed("cuda")
    assert str(info.value) == (
        "device: LOCAL_RANK 2 but this node has 2 CUDA devices: --nproc_per_node must not exceed the GPUs per node"
    )
    assert info.value.field == "device" and chosen == [torch.device("cuda", 1)]


# ------------------------------------------------------------------------------------------ data
def test_an_evaluation_shard_is_every_nth_item_from_the_rank() -> None:
    data = TensorDataset(torch.arange(7))
    second = shard_dataset(data, DistContext(1, 3))
    assert list(second.indices) == [1, 4] and [int(second[i][0]) for i in range(len(second))] == [1, 4]
    assert list(shard_dataset(data, DistContext(0, 3)).indices) == [0, 3, 6]
    assert list(shard_dataset(data, DistContext(2, 3)).indices) == [2, 5]
    assert shard_dataset(data, DistContext()) is data


def test_the_local_batch_is_an_integer_share_of_the_global_one() -> None:
    assert local_batch_size(12, DistContext(0, 4)) == 3 and type(local_batch_size(12, DistContext(0, 4))) is int
    assert local_batch_size(5, DistContext()) == 5
    with pytest.raises(ConfigError) as info:
        local_batch_size(10, DistContext(1, 4))
    assert str(info.value) == "batch_size: 10 is the global batch, split over 4 processes: it must be a multiple of 4"


def test_a_sampler_takes_its_slice_of_each_global_batch_from_one_permutation() -> None:
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    after_one_draw = torch.Generator().manual_seed(5)
    torch.randperm(10, generator=after_one_draw)
    gen = torch.Generator().manual_seed(5)
    second = ShardedBatchSampler(10, 4, gen, drop_last=True, ctx=DistContext(1, 2))
    assert (len(second), second.local) == (2, 2)
    assert list(second) == [order[2:4], order[6:8]]
    assert torch.equal(gen.get_state(), after_one_draw.get_state())  # one randperm per epoch, nothing else
    whole = ShardedBatchSampler(10, 4, torch.Generator().manual_seed(5), drop_last=False)
    assert whole.ctx == DistContext() and len(whole) == 3
    assert list(whole) == [order[0:4], order[4:8], order[8:10]]  # a world of one keeps the ragged batch
    assert len(ShardedBatchSampler(8, 4, gen, drop_last=False)) == 2
    assert len(ShardedBatchSampler(9, 4, gen, drop_last=True)) == 2
    assert len(ShardedBatchSampler(3, 4, gen, drop_last=False)) == 1


def test_sharded_batches_need_drop_last() -> None:
    with pytest.raises(ValueError) as info:
        ShardedBatchSampler(10, 4, torch.Generator(), drop_last=False, ctx=DistContext(0, 2))
    assert str(info.value) == "sharded training batches need drop_last=True (every rank must take the same steps)"
    assert len(ShardedBatchSampler(10, 4, torch.Generator(), drop_last=True, ctx=DistContext(0, 2))) == 2


@pytest.mark.parametrize(
    ("n", "batch", "world", "expected"),
    [
        (17, 16, 1, (16, True)),  # several batches: a ragged last one is dropped, on any number of processes
        (17, 16, 2, (16, True)),
        (32, 16, 4, (16, True)),
        (15, 16, 1, (16, False)),  # the only batch: one process trains it whole, ragged
        (16, 16, 1, (16, False)),
        (15, 16, 2, (14, True)),  # the only batch, on several: 7 + 7 images, the 15th left over
        (16, 16, 2, (16, True)),
        (7, 16, 4, (4, True)),
        (2, 16, 2, (2, True)),
    ],
)
def test_a_training_set_no_larger_than_one_global_batch_is_one_step_of_equal_slices(
    n: int, batch: int, world: int, expected: tuple[int, bool]
) -> None:
    assert training_batches(n, batch, DistContext(world - 1, world)) == expected


@pytest.mark.parametrize(
    ("n", "batch", "world", "message"),
    [
        (1, 16, 2, "limit_train: 1 training image for 2 processes: distributed training needs at least 2 (one per "
                   "process)"),
        (3, 16, 4, "limit_train: 3 training images for 4 processes: distributed training needs at least 4 (one per "
                   "process)"),
        (15, 15, 2, "batch_size: 15 is the global batch, split over 2 processes: it must be a multiple of 2"),
    ],
)  # fmt: skip
def test_fewer_training_images_than_processes_or_an_uneven_batch_is_refused(
    n: int, batch: int, world: int, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        training_batches(n, batch, DistContext(0, world))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("cpus", "local", "workers"),
    [(2, None, 2), (2, "1", 2), (2, "2", 1), (3, "2", 1), (2, "3", 0), (16, None, 4), (16, "4", 4), (16, "5", 3),
     (5, None, 4), (4, None, 4), (3, None, 3)],
)  # fmt: skip
def test_default_workers_share_this_processs_cpus_among_the_local_processes_at_most_four(
    monkeypatch: pytest.MonkeyPatch, cpus: int, local: str | None, workers: int
) -> None:
    """``min(4, CPUs this process may use // LOCAL_WORLD_SIZE)``: the affinity counts, not the machine's CPUs."""
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 64)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert default_workers() == workers
    assert default_workers(limit=1) == min(1, workers)


def test_default_workers_count_the_machines_cpus_where_affinity_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``os.sched_getaffinity`` (macOS, Windows): ``os.cpu_count()``, or 1 when even that is unknown."""
    monkeypatch.delattr(distributed.os, "sched_getaffinity", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 6)
    assert default_workers() == 3
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: None)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert default_workers() == 1


@pytest.mark.parametrize("n", [7, 13, 16])
def test_evaluation_shards_count_every_item_exactly_once(n: int) -> None:
    data = TensorDataset(torch.arange(n))
    shards = [shard_dataset(data, DistContext(rank=r, world_size=3)) for r in range(3)]
    seen = sorted(int(s[i][0]) for s in shards for i in range(len(s)))
    assert seen == list(range(n))  # no padding, no duplicate (DistributedSampler would pad 7 to 9)
    assert shard_dataset(data, DistContext()) is data


def test_sharded_batches_are_slices_of_the_global_batches() -> None:
    def batches(rank: int, world: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(5)
        return list(ShardedBatchSampler(10, 4, gen, drop_last=True, ctx=DistContext(rank, world)))

    whole = batches(0, 1)
    assert len(whole) == 2 and all(len(b) == 4 for b in whole)  # 10 items, global batch 4: ragged 2 dropped
    assert [a + b for a, b in zip(batches(0, 2), batches(1, 2), strict=True)] == whole
    assert [len(b) for b in batches(1, 2)] == [2, 2]


def test_a_global_batch_must_split_evenly() -> None:
    with pytest.raises(ConfigError, match=r"multiple of 4") as info:
        ShardedBatchSampler(10, 6, torch.Generator(), drop_last=True, ctx=DistContext(0, 4))
    assert info.value.field == "batch_size"
    with pytest.raises(ValueError, match="drop_last"):
        ShardedBatchSampler(10, 4, torch.Generator(), drop_last=False, ctx=DistContext(0, 2))


def test_without_torchrun_environment_it_is_a_world_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert init_distributed("cpu") == (DistContext(), torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="no RANK"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ConfigError, match="RANK='zero' is not an integer"):
        init_distributed("cpu")
