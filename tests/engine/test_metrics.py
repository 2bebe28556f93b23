"""Top-k hits and the running epoch statistics on hand-made logits."""

from __future__ import annotations

import pytest
import torch

from visionlab.engine.metrics import RunningStats, topk_correct

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
