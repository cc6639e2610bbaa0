"""Publishing a verified toy ranker into a model store; failures leave the store unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
import yaml

from service.contracts.feature_spec import FeatureSpec
from service.contracts.manifest import RankExample
from service.contracts.tasks import DerivedObjective, TaskSpec
from service.model_store import ModelStore
from tests.training.export.toy_ranker import TASKS, toy_arrays, toy_ranker
from training.export.publish import PublishInputs, default_fusion, publish, warmup_requests
from training.export.verify import VerificationError, unsplit_reference

WARMUP = RankExample.model_validate(
    {"user": {"id": "u1", "features": {"age": 30}}, "candidates": [{"id": "3", "features": {}}]}
)


def toy_inputs(tmp_path: Path, **overrides) -> PublishInputs:
    plot = tmp_path / "loss_curves.png"
    plot.write_bytes(b"png")
    report = tmp_path / "metrics.json"
    report.write_text('{"tasks": {}}')
    ranker = toy_ranker()
    fields: dict[str, Any] = {
        "ranker": ranker,
        "reference": unsplit_reference(ranker),
        "architecture": "toy",
        "hyperparameters": {"hidden": 16},
        "tasks": TASKS,
        "derived": [],
        "feature_spec": FeatureSpec(name="toy", features=[]),
        "arrays": toy_arrays(200),
        "warmup": [WARMUP],
        "metrics": {"tasks": {"click": {"auc": 0.5, "n": 10}}},
        "data_card": {"rows": 200},
        "attachments": {"plots/loss_curves.png": plot, "report.json": report},
    }
    return PublishInputs(**(fields | overrides))


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_published_version_verifies_and_scores_with_onnxruntime(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    version = publish(toy_inputs(tmp_path), store, "toy")
    manifest = store.verify("toy", version)
    assert store.current("toy") == version  # first version becomes current
    assert sorted(manifest.files) == [
        "candidates.onnx",
        "fusion.yaml",
        "plots/loss_curves.png",
        "report.json",
        "user.onnx",
    ]
    assert manifest.verification.rows == 200
    assert manifest.objective_ids() == ["click", "watch_time"]
    folder = store.version_dir("toy", version)
    fusion = yaml.safe_load((folder / "fusion.yaml").read_text())
    assert fusion["default"] == manifest.fusion_default == "balanced"

    arrays = toy_arrays(5, seed=9)
    user = ort.InferenceSession(str(folder / manifest.graphs.user.file))
    cand = ort.InferenceSession(str(folder / manifest.graphs.candidates.file))
    rep = user.run(None, {n: arrays[n][:1] for n in manifest.graphs.user.input_names()})[0]
    feed = {"user_rep": rep} | {n: arrays[n] for n in manifest.graphs.candidates.input_names()[1:]}
    scores = dict(zip(manifest.graphs.candidates.output_names(), cand.run(None, feed), strict=True))
    user_rows = {k: np.repeat(v[:1], 5, axis=0) for k, v in arrays.items() if k.startswith("user")}
    with torch.no_grad():
        expected = toy_ranker().forward_unsplit(
            **{k: torch.from_numpy(v) for k, v in (arrays | user_rows).items()}
        )
    np.testing.assert_allclose(scores["click"], expected[:, 0].numpy(), atol=1e-5)


def test_later_versions_leave_current_unless_asked(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    first = publish(toy_inputs(tmp_path), store, "toy")
    second = publish(toy_inputs(tmp_path), store, "toy")
    assert store.current("toy") == first
    third = publish(toy_inputs(tmp_path), store, "toy", set_current=True)
    assert store.current("toy") == third
    assert len({first, second, third}) == 3


def test_failing_parity_check_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    publish(toy_inputs(tmp_path), store, "toy")
    before = tree(tmp_path / "store")
    wrong = unsplit_reference(toy_ranker(seed=5))
    with pytest.raises(VerificationError, match="parity"):
        publish(toy_inputs(tmp_path, reference=wrong), store, "toy", set_current=True)
    assert tree(tmp_path / "store") == before


def test_invalid_model_name_is_refused_before_export(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ValueError, match="invalid"):
        publish(toy_inputs(tmp_path), store, "../escape")
    assert tree(tmp_path) == ["loss_curves.png", "metrics.json"]


def test_default_fusion_covers_every_objective() -> None:
    tasks = [
        TaskSpec(id="click", type="binary"),
        TaskSpec(id="convert", type="binary", sample_space="click"),
        TaskSpec(id="watch_time", type="regression", target_transform="log1p"),
    ]
    fusion = default_fusion(tasks, [DerivedObjective(id="ctcvr", product=["click", "convert"])])
    terms = fusion["presets"][fusion["default"]]["terms"]
    assert fusion["presets"]["balanced"]["kind"] == "weighted_sum"
    assert list(terms) == ["click", "convert", "watch_time", "ctcvr"]
    assert terms["watch_time"] == {"weight": 0.1, "transform": "log1p"}


def test_warmup_requests_are_raw_rank_requests_without_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "age": [30.0, 30.0, np.nan],
            "history": [np.array([1, 2]), np.array([1, 2]), np.array([], dtype=np.int64)],
            "item_id": [7, 8, 9],
            "price": [np.float32(1.5), np.nan, 2.0],
            "hour": [3, 3, 4],
            "click": [1, 0, 0],
        }
    )
    user, item, context = ["user_id", "age", "history"], ["item_id", "price"], ["hour"]
    examples = warmup_requests(frame, user, item, context, requests=2, candidates=2)
    assert [e.model_dump() for e in examples] == [
        {
            "user": {"id": "u1", "features": {"user_id": "u1", "age": 30.0, "history": [1, 2]}},
            "context": {"hour": 3},
            "candidates": [
                {"id": "0", "features": {"item_id": 7, "price": 1.5}},
                {"id": "1", "features": {"item_id": 8}},
            ],
        },
        {
            "user": {"id": "u2", "features": {"user_id": "u2", "history": []}},
            "context": {"hour": 4},
            "candidates": [{"id": "2", "features": {"item_id": 9, "price": 2.0}}],
        },
    ]
