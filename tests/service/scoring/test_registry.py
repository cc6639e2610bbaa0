"""Loading, swapping and rolling back versions; a failed load never changes what is served."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from service.contracts.feature_spec import FeatureSpec
from service.contracts.manifest import Graphs, Manifest
from service.errors import ModelLoadError
from service.model_store import ModelStore
from service.scoring.registry import ModelRegistry
from service.scoring.routing import Routing
from tests.fixtures.published_model import PublishedModel, model_arrays, records
from training.export.onnx_split import export_split
from training.models import MultiTaskRanker


@pytest.fixture
def store(published_store: PublishedModel, tmp_path: Path) -> ModelStore:
    """A private copy of the session store, free to corrupt."""
    shutil.copytree(published_store.store_dir, tmp_path / "store")
    return ModelStore(tmp_path / "store")


def republish(
    store: ModelStore, base: str, *, fusion_text: str | None = None, ranker: nn.Module | None = None
) -> str:
    """A new version copied from ``base`` with a replaced fusion.yaml or re-exported graphs."""
    model = "simtest"
    source = store.version_dir(model, base)
    manifest = store.read_manifest(model, base)

    def write(staging: Path, version: str) -> Manifest:
        for name in manifest.files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, staging / name)
        if fusion_text is not None:
            (staging / "fusion.yaml").write_text(fusion_text)
        graphs = manifest.graphs
        if ranker is not None:
            spec = store_spec(manifest)
            export = export_split(
                ranker, model_arrays(spec, records(8, 3)), [t.id for t in manifest.tasks], staging
            )
            graphs = Graphs(user=export.user, candidates=export.candidates)
        return manifest.model_copy(update={"version": version, "files": {}, "graphs": graphs})

    return store.publish(model, write)


def store_spec(manifest: Manifest) -> FeatureSpec:
    return manifest.feature_spec


class NonFinite(nn.Module):
    """The published ranker with every candidate score multiplied by +inf."""

    def __init__(self, base: MultiTaskRanker) -> None:
        super().__init__()
        self.base = base

    def user_representation(self, user_cat: Tensor, user_num: Tensor, user_seq: Tensor) -> Tensor:
        out: Tensor = self.base.user_representation(user_cat, user_num, user_seq)
        return out

    def score_candidates(self, user_rep: Tensor, **arrays: Tensor) -> Tensor:
        out: Tensor = self.base.score_candidates(user_rep, **arrays)
        return out * torch.tensor(float("inf"))


def test_load_serves_the_current_version(published_store: PublishedModel) -> None:
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    assert not registry.ready
    loaded = registry.load()
    assert loaded.version == published_store.versions[0]  # the first publish set `current`
    assert registry.active is loaded
    assert registry.ready
    assert loaded.objectives == ["click", "convert", "watch_time", "ctcvr"]


def test_a_swap_releases_the_previous_version_without_the_cyclic_collector(
    published_store: PublishedModel,
) -> None:
    v1, v2 = published_store.versions
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    gc.disable()  # reference counting alone must free it: the heap is frozen after a swap
    try:
        first = weakref.ref(registry.load(v1))
        second = registry.load(v2)
        assert registry.active is second
        assert first() is None  # no cycle keeps a swapped-out version (or its sessions) alive
    finally:
        gc.enable()


def test_build_changes_nothing_until_installed(published_store: PublishedModel) -> None:
    v1, v2 = published_store.versions
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    serving = registry.load(v1)
    built = registry.build(v2)
    assert registry.active is serving
    previous = registry.install(Routing(built))
    assert previous.serving is serving
    assert registry.active is built


def test_a_registry_without_a_model_name_refuses_to_load(published_store: PublishedModel) -> None:
    registry = ModelRegistry(ModelStore(published_store.store_dir), None)
    with pytest.raises(ModelLoadError, match="no model to serve"):
        registry.build()
    registry.bind(published_store.model)
    assert registry.build().version == published_store.versions[0]


def test_failed_load_of_corrupt_file_keeps_serving_version(
    store: ModelStore, published_store: PublishedModel
) -> None:
    v1, v2 = published_store.versions
    registry = ModelRegistry(store, "simtest")
    serving = registry.load(v1)
    with (store.version_dir("simtest", v2) / "candidates.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match=r"step 'checksums'.*candidates\.onnx") as info:
        registry.load(v2)
    assert f"still serving {v1}" in str(info.value)
    assert registry.active is serving


def test_failed_load_of_bad_fusion_config_keeps_serving_version(
    store: ModelStore, published_store: PublishedModel
) -> None:
    v1 = published_store.versions[0]
    registry = ModelRegistry(store, "simtest")
    serving = registry.load(v1)
    bad = republish(
        store,
        v1,
        fusion_text="default: balanced\npresets: {balanced: {terms: {like: {weight: 1}}}}\n",
    )
    with pytest.raises(ModelLoadError, match=r"step 'fusion'.*'like' is not an objective"):
        registry.load(bad)
    assert registry.active is serving


def test_failed_load_of_non_finite_outputs_keeps_serving_version(
    store: ModelStore, published_store: PublishedModel
) -> None:
    v1 = published_store.versions[0]
    registry = ModelRegistry(store, "simtest")
    serving = registry.load(v1)
    bad = republish(store, v1, ranker=NonFinite(published_store.rankers[v1]))
    with pytest.raises(ModelLoadError, match=r"step 'sanity'.*non-finite"):
        registry.load(bad)
    assert registry.active is serving


def test_unknown_version_fails_to_load(published_store: PublishedModel) -> None:
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    with pytest.raises(ModelLoadError, match="no version 'nope'"):
        registry.load("nope")
    assert registry.active is None


def test_versions_score_differently(published_store: PublishedModel) -> None:
    v1, v2 = published_store.versions
    registry = ModelRegistry(ModelStore(published_store.store_dir), published_store.model)
    arrays = model_arrays(published_store.spec, records(5, 11))
    scores = []
    for version in (v1, v2):
        model = registry.load(version)
        rep = model.sessions.user_rep({k: v[:1] for k, v in arrays.items()})
        scores.append(model.objective_scores(rep, arrays, 5)["click"])
    assert not np.allclose(scores[0], scores[1])
