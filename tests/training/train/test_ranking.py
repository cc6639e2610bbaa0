"""Learning-to-rank losses and metrics, sample weights in losses and metrics, request batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.contracts.tasks import TaskSpec
from training.models.ranker import RankerOutput
from training.train.arrays import REQUEST_GROUPS, TrainArrays, batch_indices
from training.train.losses import TaskLosses, task_losses
from training.train.metrics import auc, ranking_metrics, task_metrics, weighted_auc
from training.train.ranking import group_matrix, rank_loss

RANK = TaskSpec(id="relevance", type="rank")


def test_group_matrix_pads_each_request_into_one_row() -> None:
    groups = torch.tensor([7, 3, 7, 7, 3])
    mask, (values,) = group_matrix(groups, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    torch.testing.assert_close(values, torch.tensor([[2.0, 5.0, 0.0], [1.0, 3.0, 4.0]]))
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_listwise_loss_is_the_softmax_cross_entropy_of_each_request() -> None:
    scores = torch.tensor([2.0, 0.0, 1.0, 5.0, 5.0])
    labels = torch.tensor([1.0, 0.0, 3.0, 0.0, 0.0])  # request 1 has no relevant row: skipped
    groups = torch.tensor([0, 0, 0, 1, 1])
    ones = torch.ones(5)
    loss = rank_loss("softmax", scores, labels, groups, torch.ones(5, dtype=torch.bool), ones)
    log_p = torch.log_softmax(torch.tensor([2.0, 0.0, 1.0]), 0)
    torch.testing.assert_close(loss, -(0.25 * log_p[0] + 0.75 * log_p[2]))


def test_ranknet_counts_every_ordered_pair_and_bpr_only_relevant_against_irrelevant() -> None:
    scores = torch.tensor([1.0, 0.0, 3.0])
    labels = torch.tensor([2.0, 0.0, 1.0])
    groups, valid, ones = (
        torch.zeros(3, dtype=torch.long),
        torch.ones(3, dtype=torch.bool),
        torch.ones(3),
    )
    softplus = torch.nn.functional.softplus
    ranknet = rank_loss("ranknet", scores, labels, groups, valid, ones)
    pairs = [(1.0 - 0.0), (1.0 - 3.0), (3.0 - 0.0)]  # (0,1), (0,2), (2,1): y_i > y_j
    torch.testing.assert_close(
        ranknet, torch.stack([softplus(torch.tensor(-d)) for d in pairs]).mean()
    )
    bpr = rank_loss("bpr", scores, labels, groups, valid, ones)
    torch.testing.assert_close(
        bpr, (softplus(torch.tensor(-1.0)) + softplus(torch.tensor(-3.0))) / 2
    )


def test_rows_outside_the_space_join_no_pair_and_no_pair_gives_zero() -> None:
    scores = torch.tensor([1.0, 0.0, 3.0], requires_grad=True)
    labels = torch.tensor([2.0, 0.0, 1.0])
    groups = torch.tensor([0, 0, 1])
    loss = rank_loss(
        "ranknet", scores, labels, groups, torch.tensor([True, False, True]), torch.ones(3)
    )
    assert float(loss.detach()) == 0.0
    torch.autograd.backward(loss)
    assert scores.grad is not None
    assert torch.isfinite(scores.grad).all()


def test_task_losses_score_a_rank_task_by_request_and_need_groups() -> None:
    spec = TaskLosses([RANK], ["ranknet"])
    logits = torch.tensor([[2.0], [0.0], [1.0], [0.0]])
    out = RankerOutput(logits, logits, {})
    labels = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    loss = task_losses(out, labels, spec, groups=torch.tensor([0, 0, 1, 1]))
    softplus = torch.nn.functional.softplus
    torch.testing.assert_close(
        loss[0], (softplus(torch.tensor(-2.0)) + softplus(torch.tensor(1.0))) / 2
    )
    with pytest.raises(ValueError, match="needs the rows' request groups"):
        task_losses(out, labels, spec)
    with pytest.raises(ValueError, match="cannot use loss 'bce'"):
        TaskLosses([RANK], ["bce"])


def test_sample_weights_scale_each_rows_share_of_a_task_loss() -> None:
    spec = TaskLosses([TaskSpec(id="click", type="binary")], ["bce"])
    leaf = torch.tensor([[0.0], [0.0], [0.0]], requires_grad=True)
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    weights = torch.tensor([[3.0], [1.0], [0.0]])
    loss = task_losses(RankerOutput(leaf, torch.sigmoid(leaf), {}), labels, spec, weights)[0]
    assert float(loss.detach()) == pytest.approx(math.log(2.0))  # (3 + 1) log 2 / 4
    torch.autograd.backward(loss)
    assert leaf.grad is not None
    assert float(leaf.grad[2, 0]) == 0.0  # weight 0: no gradient
    assert float(leaf.grad[0, 0]) == pytest.approx(-3 * 0.5 / 4)


def test_weighted_auc_counts_a_weighted_row_like_repeated_rows() -> None:
    y, s = [1, 0, 1, 0, 1], [0.9, 0.8, 0.3, 0.1, 0.8]
    assert weighted_auc(y, s, np.ones(5)) == pytest.approx(auc(y, s))
    repeated = auc([1, 0, 1, 0, 1, 1, 1, 0], [0.9, 0.8, 0.3, 0.1, 0.8, 0.3, 0.3, 0.8])
    assert weighted_auc(y, s, [1, 2, 3, 1, 1]) == pytest.approx(repeated)
    metrics = task_metrics(TaskSpec(id="c", type="binary"), {"c": np.array(y, float)},
                           np.array(s), weights=np.array([1, 2, 3, 1, 1.0]))  # fmt: skip
    assert metrics["weighted_auc"] == pytest.approx(repeated)
    assert metrics["auc"] == pytest.approx(auc(y, s))


def test_ndcg_and_mrr_of_known_rankings() -> None:
    groups = [0, 0, 0, 1, 1, 2, 2]
    labels = [0, 2, 1, 1, 0, 0, 0]  # request 2 has nothing relevant: left out
    scores = [0.9, 0.5, 0.1, 0.2, 0.7, 0.3, 0.4]
    m = ranking_metrics(groups, labels, scores, ks=(2, 10))
    dcg0 = 2 / math.log2(3) + 1 / math.log2(4)
    idcg0 = 2 + 1 / math.log2(3)
    ndcg1 = (1 / math.log2(3)) / 1.0
    assert m["ndcg@10"] == pytest.approx((dcg0 / idcg0 + ndcg1) / 2)
    assert m["ndcg@2"] == pytest.approx(((2 / math.log2(3)) / idcg0 + ndcg1) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["groups"] == 2
    perfect = ranking_metrics(groups, labels, [0, 2, 1, 1, 0, 0, 0])
    assert perfect["ndcg@10"] == pytest.approx(1.0)
    assert perfect["mrr"] == pytest.approx(1.0)


def test_request_batches_hold_whole_requests_and_every_row_once() -> None:
    groups = torch.repeat_interleave(
        torch.arange(30), torch.randint(1, 8, (30,), generator=torch.Generator().manual_seed(0))
    )
    data = TrainArrays({REQUEST_GROUPS: groups}, torch.zeros(len(groups), 1))
    batches = batch_indices(data, 16, torch.Generator().manual_seed(1), whole_groups=True)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(len(groups)))
    seen: set[int] = set()
    for batch in batches:
        inside = set(groups[batch].tolist())
        assert not inside & seen  # a request never spans two batches
        seen |= inside
    assert all(len(b) >= 16 for b in batches[:-1])
