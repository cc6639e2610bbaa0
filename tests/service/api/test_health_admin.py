"""Probes and the admin API: readiness follows the model, admin needs the token, swaps are atomic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.model_store import ModelStore
from tests.fixtures.published_model import PublishedModel
from tests.service.api.conftest import ADMIN_TOKEN, AppClient, MakeApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _served_version(client: AppClient, body: dict[str, Any]) -> str:
    response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    version: str = response.json()["model"]["version"]
    return version


@pytest.fixture
def store_copy(tmp_path: Path, published_store: PublishedModel) -> Path:
    """A private copy of the published store that a test may damage."""
    root = tmp_path / "store"
    shutil.copytree(published_store.store_dir, root)
    return root


def _corrupt(root: Path, model: str, version: str) -> None:
    graph = root / model / version / "candidates.onnx"
    graph.write_bytes(graph.read_bytes()[:-16] + b"\0" * 16)


def test_healthz_and_readyz_answer_ok_with_the_served_model(
    client: AppClient, published_store: PublishedModel
) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": "simtest", "version": published_store.versions[0]}


def test_a_model_that_fails_to_load_leaves_the_service_alive_but_not_ready(
    make_app: MakeApp, store_copy: Path, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    _corrupt(store_copy, published_store.model, published_store.versions[0])
    with AppClient(make_app(models_dir=store_copy)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready"
        rank = client.post("/rank", json=example)
        assert rank.status_code == 503
        assert rank.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Basic abc"}, 401)],
)
def test_admin_refuses_missing_or_wrong_tokens(
    client: AppClient, headers: dict[str, str], status: int
) -> None:
    response = client.get("/admin/models", headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "unauthorized"


def test_admin_is_disabled_without_a_configured_token(make_app: MakeApp) -> None:
    with AppClient(make_app(admin_token=None)) as client:
        response = client.post("/admin/models/rollback", headers=AUTH)
    assert response.status_code == 403
    assert "MTRANK_ADMIN_TOKEN" in response.json()["error"]["message"]


def test_admin_lists_active_and_available_versions(
    client: AppClient, published_store: PublishedModel
) -> None:
    listed = client.get("/admin/models", headers=AUTH).json()
    assert listed["active"]["version"] == published_store.versions[0]
    assert listed["available"] == published_store.versions
    assert listed["current"] == published_store.versions[0]


def test_load_swaps_the_served_version_and_rollback_restores_it(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    before = client.post("/rank", json=example).json()
    loaded = client.post("/admin/models/load", json={"version": v2}, headers=AUTH)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["version"] == v2
    after = client.post("/rank", json=example).json()
    assert after["model"]["version"] == v2
    assert after["items"] != before["items"]  # different weights, different scores
    assert client.post("/admin/models/rollback", headers=AUTH).json()["version"] == v1
    assert client.post("/rank", json=example).json() == before
    metrics = client.get("/metrics").text
    assert 'mtrank_model_swaps_total{result="ok"} 2.0' in metrics
    info = [line for line in metrics.splitlines() if line.startswith("mtrank_model_info{")]
    assert len(info) == 1
    assert f'version="{v1}"' in info[0]
    assert 'role="serving"' in info[0]


def test_failed_load_answers_409_naming_the_step_and_keeps_serving(
    make_app: MakeApp, store_copy: Path, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    _corrupt(store_copy, published_store.model, v2)
    with AppClient(make_app(models_dir=store_copy)) as client:
        response = client.post("/admin/models/load", json={"version": v2}, headers=AUTH)
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert "checksums" in error["message"]
        assert _served_version(client, example) == v1
        assert 'mtrank_model_swaps_total{result="failed"} 1.0' in client.get("/metrics").text


def test_loading_an_unknown_version_is_404_and_rollback_without_history_is_409(
    client: AppClient,
) -> None:
    missing = client.post("/admin/models/load", json={"version": "nope"}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "version"
    assert client.post("/admin/models/rollback", headers=AUTH).status_code == 409


def test_load_body_is_validated(client: AppClient) -> None:
    response = client.post("/admin/models/load", json={"version": 3}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "version"


def test_a_renamed_copy_of_a_version_can_be_loaded_once_its_manifest_agrees(
    make_app: MakeApp, store_copy: Path, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    model, v1 = published_store.model, published_store.versions[0]
    copy_dir = store_copy / model / "v1-copy"
    shutil.copytree(store_copy / model / v1, copy_dir)
    manifest = json.loads((copy_dir / "manifest.json").read_text())
    manifest["version"] = "v1-copy"
    (copy_dir / "manifest.json").write_text(json.dumps(manifest))
    assert "v1-copy" in ModelStore(store_copy).versions(model)
    with AppClient(make_app(models_dir=store_copy)) as client:
        response = client.post("/admin/models/load", json={"version": "v1-copy"}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert _served_version(client, example) == "v1-copy"
