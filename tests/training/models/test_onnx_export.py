"""Every architecture exports as the DUPN split and onnxruntime matches the unsplit PyTorch model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.models.small import ARCH_NAMES, TASKS, random_batch, small_layout, small_ranker
from training.export.onnx_split import export_split
from training.export.verify import unsplit_reference, verify_split


@pytest.mark.slow
def test_every_architecture_exports_and_matches_onnxruntime(tmp_path: Path) -> None:
    arrays = {k: v.numpy() for k, v in random_batch(small_layout(), 40, seed=7).items()}
    worst = {}
    for name in ARCH_NAMES:
        model = small_ranker(name, esmm=("click", "convert"), position_bias_tasks=["click"])
        model.eval()
        folder = tmp_path / name
        export = export_split(model, arrays, [t.id for t in TASKS], folder)
        assert export.candidates.inputs[1].shape == ["N", 2]  # candidates stay dynamic
        report = verify_split(
            folder, export.user, export.candidates, TASKS, arrays, unsplit_reference(model)
        )
        assert report.batch_size == 32  # more candidates than the 8 used for tracing
        worst[name] = max(report.max_abs_diff, report.max_rel_diff_regression or 0.0)
    assert max(worst.values()) < 1e-5, worst
