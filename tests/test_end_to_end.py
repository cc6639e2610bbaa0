"""The whole product path through its command lines: generate simulator rows, train, publish into
a model store, manage versions, then rank over HTTP with a real uvicorn process.

/rank's objectives must equal onnxruntime run directly on the published files and the unsplit
PyTorch model for the same raw features, within 1e-5 (and 1e-6 relative: float32 seconds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.contracts.manifest import Manifest
from service.contracts.transform import FeatureTransform
from service.model_store import ModelStore
from tests.fixtures.trained_run import TrainedRun
from tests.fixtures.uvicorn_server import running_service
from training.cli.main import main
from training.train.checkpoint import load_run

pytestmark = pytest.mark.slow

MODEL = "feed"
SERVING_SIDES = ("user", "item", "context")


class Published:
    def __init__(self, trained: TrainedRun, store: Path) -> None:
        self.data = trained.data
        self.run = trained.run
        self.store = store
        self.first_version = ""


@pytest.fixture(scope="module")
def published(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Published:
    p = Published(trained_run, tmp_path_factory.mktemp("e2e") / "store")
    assert main(["publish", str(p.run), "--store", str(p.store), "--model", MODEL]) == 0
    p.first_version = ModelStore(p.store).versions(MODEL)[0]
    return p


@pytest.fixture(scope="module")
def manifest(published: Published) -> Manifest:
    return ModelStore(published.store).verify(MODEL, published.first_version)


@pytest.fixture(scope="module")
def service_url(published: Published) -> Iterator[str]:
    env = {"MTRANK_MODELS_DIR": str(published.store), "MTRANK_MODEL": MODEL}
    with running_service(env) as base_url:
        yield base_url


def test_publish_writes_a_verified_current_version_with_report_and_plots(
    published: Published, manifest: Manifest
) -> None:
    store = ModelStore(published.store)
    assert store.current(MODEL) == published.first_version
    assert {"user.onnx", "candidates.onnx", "fusion.yaml", "metrics.json"} <= set(manifest.files)
    assert "plots/training_curves.png" in manifest.files
    assert manifest.architecture == "mmoe"
    assert manifest.verification.max_abs_diff <= 1e-5
    assert manifest.feature_spec.is_fitted
    assert manifest.metrics["tasks"]["click"]["n"] > 0
    assert list(manifest.objective_ids()) == [
        "click",
        "convert",
        "watch_time",
        "like",
        "share",
        "ctcvr",
    ]
    assert manifest.warmup, "warm-up requests come from held-out rows"


def test_models_commands_list_show_and_move_current(
    published: Published, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(published.store, store_dir)
    store = ModelStore(store_dir)
    first = published.first_version
    assert main(["publish", str(published.run), "--store", str(store_dir), "--model", MODEL]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert second != first
    assert store.versions(MODEL) == [first, second]
    assert store.current(MODEL) == first  # a later publish leaves current alone unless asked

    assert main(["models", "list", "--store", str(store_dir)]) == 0
    listing = capsys.readouterr().out
    assert f"* {first}" in listing
    assert f"  {second}" in listing
    assert "click[auc=" in listing

    assert main(["models", "show", MODEL, second, "--store", str(store_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["model"], shown["version"]) == (MODEL, second)

    assert main(["models", "set-current", MODEL, second, "--store", str(store_dir)]) == 0
    assert store.current(MODEL) == second
    assert main(["models", "set-current", MODEL, "no-such-version", "--store", str(store_dir)]) == 1
    assert "no-such-version" in capsys.readouterr().err
    assert store.current(MODEL) == second


def test_set_current_refuses_a_version_whose_files_fail_their_checksums(
    published: Published, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(published.store, store_dir)
    graph = store_dir / MODEL / published.first_version / "candidates.onnx"
    graph.write_bytes(graph.read_bytes()[:-16] + b"\0" * 16)
    code = main(
        ["models", "set-current", MODEL, published.first_version, "--store", str(store_dir)]
    )
    assert code == 1
    assert "candidates.onnx" in capsys.readouterr().err


def test_publish_refuses_names_that_would_escape_the_store(
    published: Published, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["publish", str(published.run), "--store", str(tmp_path), "--model", "../evil"])
    assert code == 1
    assert "model name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _expected_scores(
    published: Published, manifest: Manifest, body: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(onnxruntime on the files, unsplit PyTorch) for the request's raw features: (N, T) each."""
    candidates = body["candidates"]
    rows = [
        {**body["user"]["features"], **body.get("context", {}), **c["features"]} for c in candidates
    ]
    transform = FeatureTransform(manifest.feature_spec, strict=True)
    arrays = transform.transform_records(rows, SERVING_SIDES)
    folder = ModelStore(published.store).version_dir(MODEL, published.first_version)
    user = ort.InferenceSession(str(folder / manifest.graphs.user.file))
    cand = ort.InferenceSession(str(folder / manifest.graphs.candidates.file))
    user_names = manifest.graphs.user.input_names()
    rep = user.run(None, {n: arrays[n][:1] for n in user_names})[0]
    feed = {"user_rep": rep} | {n: arrays[n] for n in manifest.graphs.candidates.input_names()[1:]}
    onnx_scores = np.stack(cand.run(None, feed), axis=1).reshape(len(rows), -1)
    run = load_run(published.run)
    with torch.no_grad():
        tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
        torch_scores = run.model.forward_unsplit(**tensors).double().numpy()
    return onnx_scores, torch_scores


def test_rank_over_http_equals_onnxruntime_and_unsplit_pytorch(
    published: Published, manifest: Manifest, service_url: str
) -> None:
    body = manifest.warmup[0].model_dump(mode="json")
    body["request_id"] = "e2e-1"
    response = httpx.post(f"{service_url}/rank", json=body, timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["request_id"] == "e2e-1"
    assert result["model"] == {"name": MODEL, "version": published.first_version}

    onnx_scores, torch_scores = _expected_scores(published, manifest, body)
    position = {c["id"]: k for k, c in enumerate(body["candidates"])}
    tasks = [t.id for t in manifest.tasks]
    served = np.zeros_like(onnx_scores)
    for item in result["items"]:
        row = position[item["id"]]
        served[row] = [item["objectives"][t] for t in tasks]
        ctcvr = item["objectives"]["click"] * item["objectives"]["convert"]
        assert item["objectives"]["ctcvr"] == pytest.approx(ctcvr, abs=1e-7)
    # float32 all the way: 1e-5 absolute for probabilities, a few float32 ulps (1e-6 relative) for
    # watch_time in seconds (~50 s, where one ulp is 4e-6)
    np.testing.assert_allclose(served, onnx_scores, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(served, torch_scores, rtol=1e-6, atol=1e-5)
    scores = [item["score"] for item in result["items"]]
    assert scores == sorted(scores, reverse=True)


def test_serving_process_never_imports_torch(published: Published) -> None:
    """The serve install has no torch: building the app and loading a version must not need it."""
    probe = (
        "import sys; from service.main import create_app; from service.settings import Settings;"
        f"app = create_app(Settings(models_dir={str(published.store)!r}, model={MODEL!r}));"
        "active = app.state.mtrank.registry.load(None);"
        "print(active.version, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [published.first_version, "False"]
