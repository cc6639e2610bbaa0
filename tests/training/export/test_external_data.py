"""A graph past the size threshold keeps its weights in NAME.onnx.data, which the version's
checksums cover and the service loads from the model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.contracts.feature_spec import FeatureSpec
from service.model_store import ModelStore
from service.scoring.registry import ModelRegistry
from tests.fixtures.published_model import MODEL, SPEC, build_ranker, model_arrays, records
from training.export.publish import PublishInputs, publish
from training.export.verify import unsplit_reference

pytestmark = pytest.mark.slow


def _publish(store: ModelStore, external_data_bytes: int) -> str:
    spec = FeatureSpec.model_validate(SPEC)
    ranker = build_ranker(spec, seed=3)
    inputs = PublishInputs(
        ranker=ranker,
        reference=unsplit_reference(ranker),
        architecture="mmoe",
        hyperparameters={},
        tasks=list(ranker.tasks),
        derived=[],
        feature_spec=spec,
        arrays=model_arrays(spec, records(40, seed=3)),
        warmup=[],
    )
    return publish(inputs, store, MODEL, external_data_bytes=external_data_bytes)


def test_weights_past_the_threshold_live_beside_the_graph_and_serve_the_same(
    tmp_path: Path,
) -> None:
    one = ModelStore(tmp_path / "one")
    split = ModelStore(tmp_path / "split")
    v_one, v_split = _publish(one, 1 << 30), _publish(split, 0)
    folder = split.version_dir(MODEL, v_split)
    files = sorted(p.name for p in folder.glob("*.onnx*"))
    assert files == ["candidates.onnx", "candidates.onnx.data", "user.onnx", "user.onnx.data"]
    manifest = split.read_manifest(MODEL, v_split)
    assert {"user.onnx.data", "candidates.onnx.data"} <= set(manifest.files)
    single = one.version_dir(MODEL, v_one)
    assert sorted(p.name for p in single.glob("*.onnx*")) == ["candidates.onnx", "user.onnx"]
    for graph in ("user.onnx", "candidates.onnx"):  # the weights left the graph file
        assert (folder / graph).stat().st_size < (single / graph).stat().st_size
    split.verify(MODEL, v_split)  # checksums of the graphs and of their weights

    spec = FeatureSpec.model_validate(SPEC)
    arrays = model_arrays(spec, records(12, seed=5))
    scores = []
    for store in (one, split):
        loaded = ModelRegistry(store, MODEL).load()
        user = {k: v[:1] for k, v in arrays.items() if k.startswith("user")}
        rep = loaded.sessions.user_rep(user)
        candidates = {k: v for k, v in arrays.items() if k.startswith(("item", "context"))}
        scores.append(loaded.sessions.score(rep, candidates, 12))
    assert scores[0].keys() == scores[1].keys()
    for task in scores[0]:
        np.testing.assert_array_equal(scores[0][task], scores[1][task])
