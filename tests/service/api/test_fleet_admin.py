"""The admin model lifecycle in one process: canary, shadow, presets, the fleet view, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.model_store import ModelStore
from tests.fixtures.published_model import PublishedModel
from tests.service.api.conftest import ADMIN_TOKEN, AppClient, MakeApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ONLY_CLICK = {"default": "clicks", "presets": {"clicks": {"terms": {"click": {"weight": 1.0}}}}}


def as_user(body: dict[str, Any], user: str) -> dict[str, Any]:
    return {**body, "user": {**body["user"], "id": user}}


def served(client: AppClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def admin(client: AppClient, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/admin/models{path}", json=body, headers=AUTH)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.05)


def add_version(root: Path, model: str, source: str, name: str) -> None:
    """A renamed copy of ``source`` (a third published version)."""
    folder = root / model / name
    shutil.copytree(root / model / source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = name
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_canary_sends_a_stable_share_of_users_to_the_second_version_until_promoted(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    started = admin(client, "/canary", {"version": v2, "percent": 50})
    assert started.status_code == 200, started.text
    assert started.json()["candidate"] == {"mode": "canary", "version": v2, "percent": 50.0}
    sides = {
        u: served(client, as_user(example, u))["model"]["version"] for u in map(str, range(40))
    }
    assert set(sides.values()) == {v1, v2}
    assert all(
        served(client, as_user(example, u))["model"]["version"] == v for u, v in sides.items()
    )
    metrics = client.get("/metrics").text
    assert f'mtrank_scored_requests_total{{role="canary",version="{v2}"}}' in metrics
    assert 'mtrank_model_info{model="simtest",process=' in metrics
    promoted = admin(client, "/canary/promote")
    assert (promoted.json()["version"], promoted.json()["candidate"]) == (v2, None)
    assert {served(client, as_user(example, u))["model"]["version"] for u in sides} == {v2}
    fleet = client.get("/admin/models", headers=AUTH).json()["fleet"]
    assert (fleet["serving"], fleet["previous"], fleet["candidate"]) == (v2, v1, None)


def test_abort_removes_the_canary_everywhere(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    admin(client, "/canary", {"version": v2, "percent": 100})
    assert served(client, example)["model"]["version"] == v2
    assert admin(client, "/canary/abort").status_code == 200
    assert served(client, example)["model"]["version"] == v1
    assert admin(client, "/canary/abort").status_code == 409  # nothing left to abort


def test_a_third_version_is_refused_with_409_naming_what_is_loaded(
    make_app: MakeApp, store_root: Path, published_store: PublishedModel
) -> None:
    v1, v2 = published_store.versions
    add_version(store_root, published_store.model, v1, "v3-copy")
    with AppClient(make_app()) as client:
        assert admin(client, "/shadow", {"version": v2, "percent": 10}).status_code == 200
        for path, body in (("/load", {"version": "v3-copy"}),
                           ("/canary", {"version": "v3-copy", "percent": 5})):  # fmt: skip
            refused = admin(client, path, body)
            assert refused.status_code == 409, refused.text
            error = refused.json()["error"]
            assert error["code"] == "fleet_conflict"
            assert f"serving {v1} and shadow {v2} (10%)" in error["message"]
        listed = client.get("/admin/models", headers=AUTH).json()
        assert listed["processes"][0]["candidate"]["version"] == v2


def test_shadow_changes_no_live_response_and_records_how_it_agrees(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    before = [served(client, as_user(example, str(u))) for u in range(5)]
    assert admin(client, "/shadow", {"version": v2, "percent": 100}).status_code == 200
    during = [served(client, as_user(example, str(u))) for u in range(5)]
    assert during == before  # scored by the serving version, byte for byte the same answer

    def scored() -> float:
        text = client.get("/metrics").text
        line = f'mtrank_shadow_requests_total{{result="scored",version="{v2}"}} '
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    eventually(lambda: scored() == 5)
    metrics = client.get("/metrics").text
    assert f'mtrank_shadow_topk_overlap_count{{version="{v2}"}} 5.0' in metrics
    assert f'mtrank_shadow_rank_correlation_count{{version="{v2}"}}' in metrics
    assert f'mtrank_fused_score_bucket{{le="+Inf",version="{v2}"}}' in metrics  # shadow scores
    assert f'mtrank_scored_requests_total{{role="serving",version="{v1}"}} 10.0' in metrics


def test_shadow_jobs_are_queued_on_the_event_loop_thread(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    """The shadow queue is an asyncio queue: a job put from a worker thread would not wake the
    shadow worker reliably (and is unsafe), so the route must queue it on the loop's thread."""
    _, v2 = published_store.versions
    scorer = client.app.state.mtrank.shadow
    queued_on_loop: list[bool] = []
    submit = scorer.submit

    def noting_thread(job: Any) -> bool:
        try:
            asyncio.get_running_loop()
            queued_on_loop.append(True)
        except RuntimeError:  # no running loop: called from a worker thread
            queued_on_loop.append(False)
        queued: bool = submit(job)
        return queued

    scorer.submit = noting_thread
    assert admin(client, "/shadow", {"version": v2, "percent": 100}).status_code == 200
    for user in range(3):
        served(client, as_user(example, str(user)))
    assert queued_on_loop == [True, True, True]


def test_fusion_presets_are_replaced_validated_and_restored(
    client: AppClient, published_store: PublishedModel, example: dict[str, Any], store_root: Path
) -> None:
    published_default = served(client, example)["fusion"]["name"]
    replaced = admin(client, "/fusion", {"fusion": ONLY_CLICK})
    assert replaced.status_code == 200, replaced.text
    ranked = served(client, example)
    assert ranked["fusion"]["name"] == "clicks"
    clicks = [item["objectives"]["click"] for item in ranked["items"]]
    assert clicks == sorted(clicks, reverse=True)
    recorded = json.loads((store_root / published_store.model / "fleet.json").read_text())
    assert set(recorded["fusion"]) == {published_store.versions[0]}
    bad = {"default": "x", "presets": {"x": {"terms": {"like": {"weight": 1.0}}}}}
    refused = admin(client, "/fusion", {"fusion": bad})
    assert refused.status_code == 409
    assert "step 'fusion'" in refused.json()["error"]["message"]
    assert served(client, example)["fusion"]["name"] == "clicks"  # nothing changed
    assert admin(client, "/fusion", {"fusion": None}).status_code == 200
    assert served(client, example)["fusion"]["name"] == published_default


def test_every_admin_action_is_one_structured_log_line(
    client: AppClient, published_store: PublishedModel, caplog: pytest.LogCaptureFixture
) -> None:
    v2 = published_store.versions[1]
    with caplog.at_level(logging.INFO, logger="service.admin"):
        admin(client, "/load", {"version": v2})
        admin(client, "/canary/promote")
    lines = [r for r in caplog.records if r.name == "service.admin"]
    assert [(r.action, r.result) for r in lines] == [("load", "ok"), ("canary_promote", "refused")]  # type: ignore[attr-defined]
    first = lines[0].__dict__
    assert first["who"].startswith("token:")
    assert ADMIN_TOKEN not in json.dumps(first, default=str)
    assert first["version"] == v2
    assert first["recorded_in"] == ["store"]
    assert lines[1].__dict__["error"] == "fleet_conflict"


def test_an_empty_store_starts_alive_not_ready_then_serves_once_a_model_is_published(
    make_app: MakeApp, tmp_path: Path, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    empty = tmp_path / "empty"
    app = make_app(models_dir=empty, model=None, fleet_poll_seconds=0.1)
    with AppClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "no model in" in ready.json()["error"]["message"]
        assert client.post("/rank", json=example).status_code == 503
        shutil.copytree(published_store.store_dir, empty)
        eventually(lambda: client.get("/readyz").status_code == 200)
        assert served(client, example)["model"]["version"] == published_store.versions[0]


def test_a_chosen_version_that_fails_here_keeps_the_old_one_serving_and_not_ready(
    make_app: MakeApp, store_root: Path, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    with AppClient(make_app(fleet_poll_seconds=0.1)) as client:
        graph = store_root / published_store.model / v2 / "candidates.onnx"
        graph.write_bytes(graph.read_bytes()[:-8] + b"\0" * 8)
        (store_root / published_store.model / "current").write_text(v2 + "\n")  # chosen elsewhere
        eventually(lambda: client.get("/readyz").status_code == 503)
        why = client.get("/readyz").json()["error"]["message"]
        assert v2 in why
        assert "checksums" in why
        assert served(client, example)["model"]["version"] == v1  # still serving its version
        me = client.get("/admin/models", headers=AUTH).json()["processes"][0]
        assert (me["serving"], me["in_sync"], me["ready"]) == (v1, False, False)
        metrics = client.get("/metrics").text
        assert "mtrank_fleet_in_sync{process=" in metrics
        assert f'mtrank_model_load_failures_total{{step="checksums",version="{v2}"}}' in metrics


def test_a_change_that_can_be_recorded_nowhere_is_refused(
    make_app: MakeApp, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    with AppClient(make_app(store_read_only=True)) as client:
        refused = admin(client, "/load", {"version": published_store.versions[1]})
        assert refused.status_code == 409
        assert "read-only and no Redis" in refused.json()["error"]["message"]
        assert served(client, example)["model"]["version"] == published_store.versions[0]


def test_the_fleet_view_lists_this_process_and_the_recorded_choice(
    client: AppClient, published_store: PublishedModel, store_root: Path
) -> None:
    listed = client.get("/admin/models", headers=AUTH).json()
    assert listed["model"] == published_store.model
    assert listed["heartbeats"] == "store"
    assert listed["fleet"]["serving"] == published_store.versions[0]
    me = listed["processes"][0]
    assert me["serving"] == published_store.versions[0]
    assert me["in_sync"]
    assert me["ready"]
    assert me["heartbeat_age_seconds"] < 5
    assert ModelStore(store_root).versions(published_store.model) == listed["available"]


def test_a_process_never_returns_to_an_older_choice_after_a_change(
    make_app: MakeApp, published_store: PublishedModel, example: dict[str, Any]
) -> None:
    v1, v2 = published_store.versions
    with AppClient(make_app(fleet_poll_seconds=0.02)) as client:  # reconciles race the changes
        for k in range(6):
            target = (v2, v1)[k % 2]
            assert admin(client, "/load", {"version": target}).status_code == 200
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                assert served(client, example)["model"]["version"] == target
