import numpy as np
import pytest
import torch
from torch import nn

from training.train.pareto import ParetoWeighting, pe_ltr_weights, project_to_simplex
from training.train.weighting import (
    DynamicWeightAverage,
    FixedWeights,
    GradNorm,
    PCGrad,
    PLESchedule,
    UncertaintyWeighting,
)


def test_fixed_weights_scale_each_task_gradient():
    x = nn.Parameter(torch.tensor([1.0, 2.0]))
    FixedWeights([2.0, 0.5]).backward(torch.stack([x[0] ** 2, x[1] ** 2]))
    torch.testing.assert_close(x.grad, torch.tensor([2.0 * 2 * 1.0, 0.5 * 2 * 2.0]))


def test_ple_schedule_decays_each_weight_by_its_gamma_per_epoch():
    schedule = PLESchedule([1.0, 2.0], gamma=[0.5, 1.0])
    for _ in range(3):
        schedule.end_epoch([0.3, 0.4])
    torch.testing.assert_close(schedule.weights(), torch.tensor([0.125, 2.0]))


def test_dwa_raises_the_weight_of_the_task_whose_loss_fell_least():
    dwa = DynamicWeightAverage([1.0, 1.0, 1.0], temperature=2.0)
    dwa.end_epoch([1.0, 1.0, 1.0])
    torch.testing.assert_close(dwa.weights(), torch.ones(3))  # w = 1 until two epochs are seen
    dwa.end_epoch([0.5, 0.9, 1.0])  # task 0 improved most, task 2 not at all
    w = dwa.weights()
    assert w[2] > w[1] > w[0]
    assert float(w.sum()) == pytest.approx(3.0)
    ratios = torch.tensor([0.5, 0.9, 1.0])
    torch.testing.assert_close(w, 3 * torch.softmax(ratios / 2.0, dim=0))


def test_uncertainty_weights_follow_the_inverse_loss_scale():
    weighting = UncertaintyWeighting(regression=[True, True, False])
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    losses = torch.tensor([4.0, 0.25, 0.5])
    for _ in range(2000):
        optimizer.zero_grad()
        weighting.backward(losses)
        optimizer.step()
    # optimum of c exp(-s) L + s/2: exp(-s) = 1 / (2 c L) -> weight c exp(-s) = 1 / (2 L)
    torch.testing.assert_close(weighting.weights(), 1.0 / (2.0 * losses), rtol=1e-3, atol=1e-4)
    assert weighting.log_vars[0] > 0 > weighting.log_vars[1]  # unclamped both ways


def test_gradnorm_lowers_the_weight_of_the_task_with_larger_gradients():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(2))
    x = torch.randn(64, 4)
    y = torch.randn(64, 2)
    params = [*shared.parameters(), *heads.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01)
    gradnorm = GradNorm([1.0, 1.0], alpha=1.5, lr=0.05, layers=[shared.weight], fallback=[])
    for _ in range(30):
        optimizer.zero_grad()
        h = torch.relu(shared(x))
        losses = torch.stack(
            [
                ((heads[0](h)[:, 0] - y[:, 0]) ** 2).mean(),
                10 * ((heads[1](h)[:, 0] - y[:, 1]) ** 2).mean(),
            ]
        )
        gradnorm.backward(losses)
        optimizer.step()
    w = gradnorm.weights()
    assert w[1] < 1.0 < w[0]
    assert float(w.sum()) == pytest.approx(2.0, rel=1e-5)
    assert gradnorm.shared == [shared.weight]


def test_gradnorm_falls_back_when_no_layer_is_shared_by_all_tasks():
    a, b, first = (nn.Parameter(torch.ones(2)) for _ in range(3))
    gradnorm = GradNorm([1.0, 1.0], alpha=1.0, lr=0.01, layers=[a, b], fallback=[first])
    losses = torch.stack([(a * first).sum(), (b * first).sum() ** 2])
    gradnorm.backward(losses)
    assert gradnorm.shared == [first]


def test_pcgrad_removes_the_conflicting_component():
    pcgrad = PCGrad([1.0, 1.0], [], seed=0)
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 < 0
    merged = pcgrad.project(torch.stack([g1, g2]))
    # g1' = g1 - (g1.g2 / |g2|^2) g2 = [0.5, 0.5]; g2' = g2 - (g2.g1 / |g1|^2) g1 = [0, 1]
    torch.testing.assert_close(merged, torch.tensor([0.5, 1.5]))
    assert float(torch.dot(torch.tensor([0.5, 0.5]), g2)) == 0.0


def test_pcgrad_leaves_agreeing_gradients_as_their_sum_and_fills_param_grads():
    x = nn.Parameter(torch.tensor([1.0, 1.0]))
    pcgrad = PCGrad([1.0, 1.0], [x], seed=0)
    pcgrad.backward(torch.stack([x[0] * 3.0, x.sum()]))  # grads [3, 0] and [1, 1]: no conflict
    torch.testing.assert_close(x.grad, torch.tensor([4.0, 1.0]))
    y = nn.Parameter(torch.tensor([1.0, 1.0]))
    PCGrad([1.0, 1.0], [y], seed=0).backward(torch.stack([y[0], y[1] - y[0]]))
    torch.testing.assert_close(y.grad, torch.tensor([0.5, 1.5]))


def test_pe_ltr_weights_are_the_min_norm_point_of_orthogonal_gradients():
    grads = np.array([[1.0, 0.0], [0.0, 2.0]])  # min w1^2 + 4 w2^2 on w1 + w2 = 1
    np.testing.assert_allclose(pe_ltr_weights(grads, [0.0, 0.0]), [0.8, 0.2], atol=1e-9)


def test_pe_ltr_lower_bounds_hold_when_the_free_optimum_violates_them():
    grads = np.array([[1.0, 0.0], [0.0, 2.0]])
    # relaxed KKT gives w_hat = (0.8, -0.1); the projection keeps w2 at its bound 0.3
    np.testing.assert_allclose(pe_ltr_weights(grads, [0.0, 0.3]), [0.7, 0.3], atol=1e-9)


def test_pe_ltr_balances_conflicting_gradients_to_a_zero_norm_combination():
    grads = np.array([[1.0, 1.0], [-2.0, -2.0], [0.0, 3.0]])
    w = pe_ltr_weights(grads, [0.05, 0.05, 0.05])
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0.05 - 1e-12).all()
    combined = w @ grads
    assert np.linalg.norm(combined) < np.linalg.norm(grads, axis=1).min()


def test_pe_ltr_gives_a_task_without_gradient_only_its_bound():
    grads = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # task 1: no in-space rows
    np.testing.assert_allclose(pe_ltr_weights(grads, [0.1, 0.1, 0.1]), [0.45, 0.1, 0.45])


def test_pe_ltr_refuses_bounds_that_leave_no_free_weight():
    with pytest.raises(ValueError, match="summing to less than 1"):
        pe_ltr_weights(np.eye(2), [0.5, 0.5])


def test_simplex_projection_is_the_nearest_point_of_the_scaled_simplex():
    np.testing.assert_allclose(project_to_simplex(np.array([0.8, -0.1]), 0.7), [0.7, 0.0])
    np.testing.assert_allclose(project_to_simplex(np.array([0.2, 0.3]), 1.0), [0.45, 0.55])


def test_pareto_weighting_steps_with_the_solved_weights():
    x = nn.Parameter(torch.tensor([1.0, 2.0]))
    weighting = ParetoWeighting([0.0, 0.0], [x])
    total = weighting.backward(torch.stack([x[0] ** 2, x[1] ** 2]))  # grads (2, 0) and (0, 4)
    torch.testing.assert_close(weighting.weights(), torch.tensor([0.8, 0.2]))
    # T * (0.8 * grad_0 + 0.2 * grad_1) with T = 2 tasks
    torch.testing.assert_close(x.grad, torch.tensor([3.2, 1.6]))
    assert float(total) == pytest.approx(2 * (0.8 * 1.0 + 0.2 * 4.0))
