"""Normalisation and embedding initialisation: every architecture keeps the exact user/candidate
split and exports with parity; BatchNorm trains on any batch the feed makes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.training.models.small import (
    ARCH_NAMES,
    CANDIDATE_KEYS,
    TASKS,
    USER_KEYS,
    arch,
    random_batch,
    served,
    small_layout,
    unsplit,
)
from training.export.onnx_split import export_split
from training.export.verify import unsplit_reference, verify_split
from training.models import MultiTaskRanker
from training.models.config import Norm


def trained(name: str, norm: Norm, seed: int = 0) -> MultiTaskRanker:
    """A small ranker after a few training-mode steps (BatchNorm running stats move off 0/1)."""
    torch.manual_seed(seed)
    model = MultiTaskRanker(small_layout(), TASKS, arch(name, norm=norm), esmm=("click", "convert"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(3):
        out = model(random_batch(model.layout, 16, seed=step))
        optimizer.zero_grad()
        (out.pred.square().sum()).backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("name", ARCH_NAMES)
def test_normalised_experts_and_towers_keep_the_split_exact(name: str, norm: Norm) -> None:
    model = trained(name, norm)
    kind = nn.BatchNorm1d if norm == "batch" else nn.LayerNorm
    assert any(isinstance(m, kind) for m in model.core.modules())  # in the experts
    assert all(any(isinstance(m, kind) for m in head.modules()) for head in model.heads)
    assert not any(isinstance(m, kind) for m in model.user_tower.modules())
    batch = random_batch(model.layout, 10, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(
            served(model, batch), unsplit(model, batch), atol=1e-5, rtol=1e-5
        )
        rep = model.user_representation(*(batch[k][:1] for k in USER_KEYS))
        together = model.score_candidates(rep, *(batch[k] for k in CANDIDATE_KEYS))
        alone = torch.cat(
            [
                model.score_candidates(rep, *(batch[k][n : n + 1] for k in CANDIDATE_KEYS))
                for n in range(10)
            ]
        )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)  # eval norm is per row


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "norm"), [("mmoe", "batch"), ("ple", "batch"), ("aitm", "batch"), ("cgc", "layer")]
)
def test_normalised_models_export_with_onnxruntime_parity(
    tmp_path: Path, name: str, norm: Norm
) -> None:
    model = trained(name, norm)
    arrays = {k: v.numpy() for k, v in random_batch(small_layout(), 40, seed=7).items()}
    export = export_split(model, arrays, [t.id for t in TASKS], tmp_path)
    report = verify_split(
        tmp_path, export.user, export.candidates, TASKS, arrays, unsplit_reference(model)
    )
    assert max(report.max_abs_diff, report.max_rel_diff_regression or 0.0) < 1e-5


def test_embedding_init_std_scales_every_table() -> None:
    torch.manual_seed(0)
    model = MultiTaskRanker(small_layout(), TASKS, arch("mmoe", embedding_init_std=0.05))
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    assert len(tables) == 5  # user 2, item 2, context 1
    values = torch.cat([t.detach().flatten() for t in tables])
    assert 0.04 < float(values.std()) < 0.06
    torch.manual_seed(0)
    default = MultiTaskRanker(small_layout(), TASKS, arch("mmoe"))
    spread = torch.cat(
        [m.weight.detach().flatten() for m in default.modules() if isinstance(m, nn.Embedding)]
    )
    assert 0.8 < float(spread.std()) < 1.2
