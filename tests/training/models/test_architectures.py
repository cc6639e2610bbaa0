"""The multi-task cores on their own: widths they ask for, gates, levels, AITM's transfer."""

from __future__ import annotations

import pytest
import torch

from training.models.aitm import AITM, calibration_penalty
from training.models.cgc import CGC
from training.models.mmoe import MMoE
from training.models.ple import PLE


def chunks(widths: list[int], rows: int = 5) -> list[torch.Tensor]:
    return [torch.randn(rows, w) for w in widths]


def test_mmoe_asks_for_every_expert_and_one_gate_per_task() -> None:
    core = MMoE(n_tasks=2, n_experts=3, expert_hidden=(4, 2))
    assert core.first_widths == [4, 4, 4, 3, 3]
    reps, gates = core(chunks(core.first_widths))
    assert [r.shape for r in reps] == [(5, 2), (5, 2)]
    assert [g.shape for g in gates] == [(5, 3), (5, 3)]


def test_cgc_task_gate_mixes_only_its_own_and_shared_experts() -> None:
    torch.manual_seed(0)
    core = CGC(n_tasks=2, n_shared=1, n_task_experts=2, expert_hidden=(4,))
    assert core.first_widths == [4] * 5 + [3, 3]  # 1 shared + 2 x 2 own; gates over 2 own + 1
    inputs = chunks(core.first_widths)
    reps, _ = core(inputs)
    other = list(inputs)
    other[3] = other[3] + 5.0  # an expert owned by task 1
    reps_after, _ = core(other)
    torch.testing.assert_close(reps_after[0], reps[0])
    assert not torch.allclose(reps_after[1], reps[1])


def test_ple_levels_after_the_first_read_the_previous_level() -> None:
    torch.manual_seed(0)
    core = PLE(n_tasks=3, n_shared=2, n_task_experts=1, expert_hidden=(4, 3), n_levels=3)
    assert core.first_widths == [4] * 5 + [3, 3, 3] + [5]  # level 1 has a shared gate over all 5
    assert [level.shared_gate for level in core.levels] == [True, True, False]
    reps, gates = core(chunks(core.first_widths))
    assert [r.shape for r in reps] == [(5, 3)] * 3
    assert [g.shape for g in gates] == [(5, 3)] * 3  # final level: 1 own + 2 shared


def test_one_level_ple_asks_for_the_same_layers_as_cgc() -> None:
    ple = PLE(n_tasks=2, n_shared=2, n_task_experts=2, expert_hidden=(4,), n_levels=1)
    cgc = CGC(n_tasks=2, n_shared=2, n_task_experts=2, expert_hidden=(4,))
    assert ple.first_widths == cgc.first_widths
    assert sum(p.numel() for p in ple.parameters()) == sum(p.numel() for p in cgc.parameters())


def test_aitm_passes_information_down_the_funnel_only() -> None:
    torch.manual_seed(0)
    core = AITM(n_tasks=3, hidden=(4, 3))
    inputs = chunks(core.first_widths)
    reps, gates = core(inputs)
    assert gates == []
    changed = list(inputs)
    changed[1] = changed[1] + 3.0  # the middle step's own input
    after, _ = core(changed)
    torch.testing.assert_close(after[0], reps[0])  # earlier steps never see later ones
    assert not torch.allclose(after[1], reps[1])
    assert not torch.allclose(after[2], reps[2])  # later steps receive the transfer


def test_calibration_penalty_counts_later_steps_likelier_than_earlier() -> None:
    probs = torch.tensor([[0.5, 0.2, 0.1], [0.3, 0.4, 0.6]])
    # row 0 is a proper funnel (0); row 1 exceeds by 0.1 and 0.2
    torch.testing.assert_close(calibration_penalty(probs), torch.tensor(0.15))
    with pytest.raises(ValueError, match="T >= 2"):
        calibration_penalty(torch.rand(4, 1))
