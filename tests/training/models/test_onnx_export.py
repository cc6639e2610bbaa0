"""Every architecture exports as the DUPN split and onnxruntime matches the unsplit PyTorch model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch

from tests.training.models.small import (
    ARCH_NAMES,
    MOE_NAMES,
    TASKS,
    random_batch,
    small_layout,
    small_ranker,
)
from training.export.onnx_split import export_split
from training.export.verify import unsplit_reference, verify_split
from training.models.blocks import mix


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
        graph = onnx.load(folder / export.candidates.file).graph
        ops = Counter(node.op_type for node in graph.node)
        # each task's output is its own column: nothing stacks the tasks to read them back
        producer = {name: node for node in graph.node for name in node.output}
        stacked_reads = [
            node.name
            for node in graph.node
            if node.op_type == "Gather"
            and getattr(producer.get(node.input[0]), "op_type", "") == "Concat"
        ]
        assert not stacked_reads, (name, stacked_reads)
        # nothing copies every candidate's activations once more: no split of a fused first layer,
        # no (N, E, d) product summed over the experts
        assert ops["Split"] == 0, (name, ops)
        if name in MOE_NAMES:
            assert ops["ReduceSum"] == 0, (name, ops)
            assert ops["MatMul"] > 0, (name, ops)
        worst[name] = max(report.max_abs_diff, report.max_rel_diff_regression or 0.0)
    assert max(worst.values()) < 1e-5, worst


def test_the_exported_mixture_is_the_trained_one(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    gate = torch.softmax(torch.randn(64, 5, dtype=torch.float64), dim=-1)
    experts = [torch.randn(64, 7, dtype=torch.float64) for _ in range(5)]
    trained = mix(gate, experts)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    exported = mix(gate, experts)
    torch.testing.assert_close(exported, trained, atol=1e-12, rtol=1e-12)
    by_hand = sum(gate[:, k : k + 1] * e for k, e in enumerate(experts))
    torch.testing.assert_close(exported, by_hand, atol=1e-12, rtol=1e-12)
