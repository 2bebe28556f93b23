"""``runtime/metrics.py``: top-k hits and the running epoch statistics on hand-made logits (in a world of one
too), and the metrics log: its records, its reader's checks, its TensorBoard scalars."""

from __future__ import annotations

import json

import pytest
import torch

from visionlab.runtime.distributed import DistContext
from visionlab.runtime.metrics import RunningStats, WaitTimer, topk_correct

# Seven classes; row i's target (TARGET[i]) sits at rank RANK[i] of its logits (1 = the largest).
LOGITS = torch.tensor(
    [
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # target 0: rank 1
        [5.0, 7.0, 9.0, 8.0, 1.0, 2.0, 3.0],  # target 1: 2 (9), 3 (8) above it -> rank 3
        [9.0, 8.0, 5.0, 7.0, 6.0, 1.0, 4.0],  # target 2: 0, 1, 3, 4 above it -> rank 5, the last top-5 place
        [9.0, 8.0, 7.0, 5.0, 6.0, 5.5, 4.5],  # target 3: 0, 1, 2, 4, 5 above it -> rank 6, just outside
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0],  # target 6: rank 7
        [0.0, 0.5, 1.0, 1.5, 2.0, 8.0, 9.0],  # target 5: 6 above it -> rank 2
    ]
)
TARGET = torch.tensor([0, 1, 2, 3, 6, 5])
RANK = [1, 3, 5, 6, 7, 2]


def test_topk_correct_counts_the_targets_within_the_top_k() -> None:
    assert [int(c) for c in topk_correct(LOGITS, TARGET)] == [1, 4]  # default ks: top-1 and top-5
    ks = (1, 2, 3, 4, 5, 6, 7)
    assert [int(c) for c in topk_correct(LOGITS, TARGET, ks)] == [sum(r <= k for r in RANK) for k in ks]
    assert [int(c) for c in topk_correct(LOGITS, TARGET, ks)] == [1, 2, 3, 3, 4, 5, 6]


def test_topk_is_capped_at_the_class_count() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    top1, top5 = topk_correct(logits, torch.tensor([2, 2]))  # 3 classes: top-5 is every class
    assert (int(top1), int(top5)) == (1, 2)


def test_running_stats_weights_batches_by_size() -> None:
    stats = RunningStats(torch.device("cpu"))
    stats.update(torch.tensor(0.5), LOGITS[:4], TARGET[:4])  # top-1 hits: row 0; top-5: rows 0, 1, 2
    stats.update(torch.tensor(2.0), LOGITS[4:], TARGET[4:])  # top-5: row 5
    summary = stats.summary()
    assert summary["n"] == 6
    assert summary["loss"] == pytest.approx((0.5 * 4 + 2.0 * 2) / 6, rel=1e-12)  # per-sample mean, not per batch
    assert summary["top1"] == pytest.approx(100.0 * 1 / 6, rel=1e-12)
    assert summary["top5"] == pytest.approx(100.0 * 4 / 6, rel=1e-12)
    assert RunningStats(torch.device("cpu")).summary() == {"loss": 0.0, "top1": 0.0, "top5": 0.0, "n": 0}


# ------------------------------------------------------------------------------------------------ metric logs
def test_read_metrics_skips_blank_lines_and_names_the_bad_line(tmp_path) -> None:
    from visionlab.errors import UserError
    from visionlab.runtime.metrics import read_metrics

    assert read_metrics(tmp_path) == []  # no metrics.jsonl yet
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n\n  \n{"epoch": 1}\n', encoding="utf-8")
    assert read_metrics(str(tmp_path)) == [{"epoch": 0}, {"epoch": 1}]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n\n{"epoch": \n', encoding="utf-8")
    with pytest.raises(UserError, match=rf"^{tmp_path / 'metrics.jsonl'}:3: not JSON \(Expecting value"):
        read_metrics(tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "not a JSON object (got list)"),
        ('"epoch"', "not a JSON object (got str)"),
        ('{"type": "epoch", "epoch": 0, "lr": 0.1, "train_loss": 2.0}', "epoch record without a number for val_loss"),
        ('{"type": "epoch", "epoch": true, "lr": null, "train_loss": "2", "val_loss": 1}',
         "epoch record without a number for epoch, lr, train_loss"),
        ('{"type": "step", "epoch": 0, "lr": 0.1}', "step record without a number for step"),
        ('{"type": "step", "step": 3, "lr": 0.1}', "step record without a number for epoch"),
    ],
)  # fmt: skip
def test_read_metrics_names_the_line_of_a_record_its_readers_cannot_use(tmp_path, line, message) -> None:
    """The report and `visionlab plot` read these keys without a default: a record without them fails here, with
    file and line, not as a bare KeyError inside a plot."""
    from visionlab.errors import UserError
    from visionlab.runtime.metrics import read_metrics

    good = '{"type": "step", "epoch": 0, "step": 1, "lr": 0.1}'
    (tmp_path / "metrics.jsonl").write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_metrics(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'metrics.jsonl'}:3: {message}"


def test_read_metrics_checks_only_the_record_types_it_knows(tmp_path) -> None:
    from visionlab.runtime.metrics import read_metrics

    records = [{"type": "epoch", "epoch": 1, "lr": 0, "train_loss": 1.5, "val_loss": float("nan")},
               {"type": "step", "epoch": 1.0, "step": 7, "lr": 1e-3},
               {"type": "note"}, {"type": ["epoch"]}, {}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    read = read_metrics(tmp_path)
    assert read[1:] == records[1:] and read[0]["val_loss"] != read[0]["val_loss"]  # NaN, as Python's json writes it


def _log(tmp_path, **kwargs):
    from visionlab.runtime.metrics import MetricsLog

    return MetricsLog(tmp_path, tensorboard=False, **kwargs)


def test_metrics_log_appends_records_and_a_fresh_log_starts_empty(tmp_path) -> None:
    from visionlab.runtime.metrics import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 5}\n', encoding="utf-8")
    log = _log(tmp_path)  # keep_through_epoch None: a new run, the old file's records go
    assert read_metrics(tmp_path) == []
    log.write({"epoch": 0, "loss": 1.5}, step=3, scalars={"train/loss": 1.5})
    log.write({"epoch": 1, "loss": 0.5}, step=6, scalars={})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text(encoding="utf-8") == (
        '{"epoch": 0, "loss": 1.5}\n{"epoch": 1, "loss": 0.5}\n'
    )


def test_metrics_log_on_resume_keeps_the_records_through_the_resumed_epoch(tmp_path) -> None:
    from visionlab.runtime.metrics import read_metrics

    step, epoch = {"lr": 0.1, "step": 1}, {"lr": 0.1, "train_loss": 2.0, "val_loss": 2.5}
    records = [{"type": "step", "epoch": 0, **step}, {"type": "epoch", "epoch": 0, **epoch},
               {"type": "step", "epoch": 1, **step}, {"type": "epoch", "epoch": 1, **epoch},
               {"type": "step", "epoch": 2, **step}, {"note": "no epoch"}]  # fmt: skip
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    _log(old, keep_through_epoch=1).close()  # in place: epoch 2's replayed step goes; a record without one stays
    assert read_metrics(old) == [*records[:4], records[5]]
    new = tmp_path / "new"
    new.mkdir()
    _log(new, keep_through_epoch=0, history_from=old).close()  # into another directory: read from the old one
    assert read_metrics(new) == [*records[:2], records[5]]
    assert read_metrics(old) == [*records[:4], records[5]]


def test_metrics_log_writes_tensorboard_scalars(tmp_path) -> None:
    from visionlab.runtime.metrics import MetricsLog

    log = MetricsLog(tmp_path)  # TensorBoard is on by default
    added = []
    log.writer.add_scalar = lambda name, value, step: added.append((name, value, step))
    log.write({"epoch": 0}, step=7, scalars={"train/loss": 0.25, "train/lr": 0.1})
    log.close()
    assert added == [("train/loss", 0.25, 7), ("train/lr", 0.1, 7)]
    assert (tmp_path / "tensorboard").is_dir()
    assert _log(tmp_path).writer is None


def test_running_stats_of_one_sample_and_exact_sums() -> None:
    stats = RunningStats(torch.device("cpu"))
    stats.update(torch.tensor(2.0**24), LOGITS[:1], TARGET[:1])  # one sample: the mean is that sample's loss
    assert stats.summary() == {"loss": 2.0**24, "top1": 100.0, "top5": 100.0, "n": 1}
    stats.update(torch.tensor(1.0), LOGITS[4:5], TARGET[4:5])  # 2^24 + 1: exact in float64, not in float32
    assert stats.summary() == {"loss": (2.0**24 + 1) / 2, "top1": 50.0, "top5": 50.0, "n": 2}
    assert stats.top1.dtype == stats.top5.dtype == torch.int64  # hit counts stay exact integers


def test_running_stats_stay_on_the_device_until_read() -> None:
    """On the ``meta`` device nothing can be read back: the sums must live there, updated without a sync."""
    meta = torch.device("meta")
    stats = RunningStats(meta)
    stats.update(torch.empty((), device=meta), LOGITS.to(meta), TARGET.to(meta))
    assert {stats.loss.device, stats.top1.device, stats.top5.device} == {meta}
    assert (stats.loss.dtype, stats.n) == (torch.float64, 6)


class _OtherRank(DistContext):
    """Rank 0 of a world of two without a process group: ``all_reduce`` adds the other rank's tensors, in the order
    they are reduced, in place, and records the dtype and values it was given."""

    def __init__(self, *others: torch.Tensor) -> None:
        super().__init__(rank=0, world_size=2)
        self.others, self.calls = list(others), []

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls.append((tensor.dtype, tensor.tolist()))
        return tensor.add_(self.others.pop(0))


def test_running_stats_sum_hits_count_and_loss_exactly_over_a_world_of_two() -> None:
    stats = RunningStats(torch.device("cpu"))
    stats.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))  # 1 and 2 hits
    other = torch.tensor([3, 5, 6]), torch.tensor(7.0, dtype=torch.float64)  # top-1, top-5, images; loss sum
    world = _OtherRank(*other)
    assert stats.all_reduce(world) is stats
    assert world.calls == [(torch.int64, [1, 2, 2]), (torch.float64, 4.0)]  # the counts in one call, then the loss
    assert (stats.top1.item(), stats.top5.item(), stats.n, type(stats.n)) == (4, 7, 8, int)
    assert stats.summary() == {"loss": 11.0 / 8, "top1": 50.0, "top5": 87.5, "n": 8}


def test_running_stats_of_a_world_of_one_are_unchanged() -> None:
    stats = RunningStats(torch.device("cpu"))
    stats.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    assert stats.all_reduce(DistContext()).summary() == {"loss": 2.0, "top1": 50.0, "top5": 100.0, "n": 2}


class _Loader:
    """Starting it takes 5 s (worker start-up), each batch 2 s, the end of the data 0.5 s, on ``clock``."""

    def __init__(self, clock: list[float], batches: int) -> None:
        self.clock, self.batches = clock, batches

    def __iter__(self):
        self.clock[0] += 5.0
        return self._batches()

    def _batches(self):
        for k in range(self.batches):
            self.clock[0] += 2.0
            yield k
        self.clock[0] += 0.5


def test_wait_timer_adds_up_the_seconds_spent_getting_items_and_the_whole_loop() -> None:
    """3 batches, 1 s of work on each: waited 5 + 3 x 2 + 0.5 = 11.5 s, elapsed 11.5 + 3 = 14.5 s; the items pass
    through unchanged."""
    clock = [100.0]
    timer = WaitTimer(_Loader(clock, 3), clock=lambda: clock[0])
    seen = []
    for item in timer:
        seen.append(item)
        clock[0] += 1.0
    assert seen == [0, 1, 2]
    assert (timer.waited, timer.elapsed) == (11.5, 14.5)


def test_wait_timer_syncs_once_at_the_end_before_reading_the_loop_time() -> None:
    """The device's queued work (here 4 s, done inside ``sync``) counts in ``elapsed``, not in ``waited``: 3
    batches as above, 14.5 s, plus 4 s; ``sync`` runs once, after the last item."""
    clock, calls = [0.0], []

    def sync() -> None:
        calls.append(clock[0])
        clock[0] += 4.0

    timer = WaitTimer(_Loader(clock, 3), clock=lambda: clock[0], sync=sync)
    for _ in timer:
        assert not calls
        clock[0] += 1.0
    assert calls == [14.5]
    assert (timer.waited, timer.elapsed) == (11.5, 18.5)


def test_wait_timer_of_a_loop_that_stops_early_keeps_the_wait_so_far() -> None:
    clock = [0.0]
    timer = WaitTimer(_Loader(clock, 3), clock=lambda: clock[0])
    for item in timer:
        clock[0] += 1.0
        if item == 1:
            break
    assert (timer.waited, timer.elapsed) == (9.0, 0.0)  # 5 + 2 + 2; no end reached, so no elapsed time
