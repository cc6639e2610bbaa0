import math

import numpy as np
import pytest
import torch

from service.contracts.tasks import TaskSpec
from tests.training.models.small import TASKS, random_batch, small_ranker
from training.models.ranker import RankerOutput
from training.train.losses import (
    TaskLosses,
    calibration_loss,
    sample_space_masks,
    task_losses,
)

NAN = math.nan
SPEC = TaskLosses(TASKS, ["bce", "bce", "mse"])


def leaf_output(logits: torch.Tensor) -> tuple[RankerOutput, torch.Tensor]:
    leaf = logits.clone().requires_grad_(True)
    pred = torch.stack([torch.sigmoid(leaf[:, 0]), torch.sigmoid(leaf[:, 1]), leaf[:, 2]], dim=1)
    return RankerOutput(leaf, pred, {}, pred[:, 0] * pred[:, 1]), leaf


def test_row_outside_sample_space_gets_zero_loss_gradient_for_that_task():
    # rows 0 and 2 were not clicked: outside the convert and watch_time spaces
    labels = torch.tensor([[0.0, NAN, NAN], [1.0, 1.0, 30.0], [0.0, 0.0, 0.0], [1.0, 0.0, 5.0]])
    out, leaf = leaf_output(torch.randn(4, 3))
    losses = task_losses(out, labels, SPEC)
    torch.autograd.backward(losses[1], retain_graph=True)
    assert leaf.grad is not None
    assert leaf.grad[[0, 2], 1].abs().sum() == 0
    assert (leaf.grad[[1, 3], 1] != 0).all()
    leaf.grad = None
    torch.autograd.backward(losses[2])
    assert leaf.grad is not None
    assert leaf.grad[[0, 2], 2].abs().sum() == 0
    assert torch.isfinite(losses).all()


def test_out_of_space_labels_change_neither_loss_nor_model_gradients():
    model = small_ranker("mmoe")
    batch = random_batch(model.layout, 6, seed=1)
    base = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 3.0], [1.0, 0.0, 8.0]] * 2)
    changed = base.clone()
    changed[[0, 3], 1:] = torch.tensor([1.0, 500.0])  # garbage where click == 0
    grads = []
    for labels in (base, changed):
        model.zero_grad()
        loss = task_losses(model(batch), labels, SPEC).sum()
        torch.autograd.backward(loss)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_batch_without_in_space_rows_gives_zero_loss_and_no_nan():
    labels = torch.tensor([[0.0, NAN, NAN], [0.0, NAN, NAN]])
    out, leaf = leaf_output(torch.randn(2, 3))
    losses = task_losses(out, labels, SPEC)
    assert losses[1] == 0
    assert losses[2] == 0
    torch.autograd.backward(losses.sum())
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()


def test_masked_mean_is_over_in_space_rows_only():
    labels = torch.tensor([[1.0, 1.0, NAN], [1.0, 0.0, NAN], [0.0, 1.0, NAN]])
    logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, -1.0, 0.0], [0.0, 5.0, 0.0]])
    out, _ = leaf_output(logits)
    loss = task_losses(out, labels, SPEC)[1]
    expected = (-np.log(1 / (1 + np.exp(-2.0))) - np.log(1 - 1 / (1 + np.exp(1.0)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_log1p_task_is_fitted_on_log1p_of_the_label():
    labels = torch.tensor([[1.0, 0.0, math.e - 1.0]])
    out, _ = leaf_output(torch.tensor([[0.0, 0.0, 1.0]]))
    assert task_losses(out, labels, SPEC)[2].item() == pytest.approx(0.0, abs=1e-6)
    huber = TaskLosses(TASKS, ["bce", "bce", "huber"], huber_delta=0.5)
    out, _ = leaf_output(torch.tensor([[0.0, 0.0, 3.0]]))  # |3 - 1| = 2 > delta
    assert task_losses(out, labels, huber)[2].item() == pytest.approx(0.5 * (2 - 0.25), rel=1e-5)


def test_esmm_fits_ctcvr_against_click_and_convert_on_every_impression():
    spec = TaskLosses(TASKS, ["bce", "bce", "mse"], esmm=(0, 1))
    labels = torch.tensor([[0.0, NAN, NAN], [1.0, 1.0, 3.0], [1.0, 0.0, 2.0]])
    logits = torch.tensor([[0.5, 1.0, 0.0], [-0.3, 0.2, 0.0], [1.5, -2.0, 0.0]])
    out, leaf = leaf_output(logits)
    loss = task_losses(out, labels, spec)[1]
    p = (1 / (1 + np.exp(-logits[:, 0].numpy()))) * (1 / (1 + np.exp(-logits[:, 1].numpy())))
    y = np.array([0.0, 1.0, 0.0])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    torch.autograd.backward(loss)
    assert leaf.grad is not None
    assert leaf.grad[0, 1] != 0  # the unclicked row trains the cvr head through pCTCVR


def test_sample_space_masks_follow_parent_label_and_finiteness():
    labels = torch.tensor([[1.0, NAN, 2.0], [0.0, 0.0, 1.0], [1.0, 0.0, NAN]])
    masks = sample_space_masks(TASKS, labels)
    assert masks.tolist() == [[True, False, True], [True, False, False], [True, True, False]]


def test_loss_kind_must_match_task_type():
    with pytest.raises(ValueError, match="watch_time"):
        TaskLosses(TASKS, ["bce", "bce", "bce"])


def test_calibration_penalises_ctcvr_above_ctr_only_through_impression_space_tasks():
    tasks = [TaskSpec(id="click", type="binary"), TaskSpec(id="buy", type="binary")]
    spec = TaskLosses(tasks, ["bce", "bce"])
    pred = torch.tensor([[0.2, 0.5], [0.6, 0.1]])
    out = RankerOutput(torch.zeros(2, 2), pred, {})
    assert float(calibration_loss(out, spec)) == pytest.approx(0.15)
    layout_only = TaskLosses(TASKS, ["bce", "bce", "mse"])  # convert is in the click space
    assert (
        float(calibration_loss(RankerOutput(torch.zeros(2, 3), torch.rand(2, 3), {}), layout_only))
        == 0.0
    )
