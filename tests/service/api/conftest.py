"""App fixtures for the HTTP tests: a real exported model (``published_store``), in-process clients.

Each app gets its own metrics registry; settings are built explicitly (never from the environment).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings
from service.store.ports import FeatureStore, UserRepCache
from tests.fixtures.published_model import PublishedModel, published_store

__all__ = ["published_store"]  # the session fixture, until tests/conftest.py registers its module

ADMIN_TOKEN = "test-admin-token"
MakeApp = Callable[..., FastAPI]


class AppClient:
    """A blocking in-process client: runs the app's lifespan and httpx's ``ASGITransport`` in an
    event loop on a helper thread (what Starlette's TestClient does, without its deprecated httpx use).
    App exceptions become 500 responses, as a server would answer, so tests can assert "never 500".
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack = ExitStack()

    def __enter__(self) -> AppClient:
        self.portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        lifespan: AbstractAsyncContextManager[Any] = self.app.router.lifespan_context(self.app)
        self.portal.call(lifespan.__aenter__)
        self._stack.callback(self.portal.call, lifespan.__aexit__, None, None, None)
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://mtrank.test")
        self._stack.callback(self.portal.call, self.client.aclose)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.portal.call(
            partial(self.client.request, method, url, **kwargs)
        )
        return response

    def request_soon(self, method: str, url: str, **kwargs: Any) -> Future[httpx.Response]:
        """Start a request without waiting for it (for concurrency tests)."""
        return self.portal.start_task_soon(partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def store_root(published_store: PublishedModel, tmp_path: Path) -> Path:
    """A private copy of the published store: admin changes write its ``current`` pointer."""
    root = tmp_path / "shared-store-copy"
    shutil.copytree(published_store.store_dir, root)
    return root


@pytest.fixture
def model_name(published_store: PublishedModel) -> str:
    return published_store.model


@pytest.fixture
def make_app(store_root: Path, model_name: str) -> MakeApp:
    """``make_app(feature_store=..., **settings)``: an app over the published model."""

    def make(
        *,
        feature_store: FeatureStore | None = None,
        user_cache: UserRepCache | None = None,
        metrics_registry: CollectorRegistry | None = None,
        **overrides: Any,
    ) -> FastAPI:
        fields: dict[str, Any] = {
            "models_dir": store_root,
            "model": model_name,
            "log_format": "text",
            "admin_token": ADMIN_TOKEN,
            "inference_threads": 1,
        }
        fields.update(overrides)
        return create_app(
            Settings(**fields),
            feature_store=feature_store,
            user_cache=user_cache,
            metrics_registry=metrics_registry or CollectorRegistry(),
        )

    return make


@pytest.fixture
def client(make_app: MakeApp) -> Iterator[AppClient]:
    with AppClient(make_app(max_candidates=50, max_sequence_length=40)) as test_client:
        yield test_client


@pytest.fixture
def example(store_root: Path, model_name: str) -> dict[str, Any]:
    """The model's warm-up example as a /rank body, with five candidates under distinct ids."""
    store = ModelStore(store_root)
    version = store.current(model_name) or store.versions(model_name)[-1]
    warmup = store.read_manifest(model_name, version).warmup[0]
    body: dict[str, Any] = warmup.model_dump(mode="json", exclude_none=True)
    rows = body["candidates"]
    body["candidates"] = [
        {**copy.deepcopy(rows[i % len(rows)]), "id": f"item-{i}"} for i in range(5)
    ]
    return body


@pytest.fixture(scope="module")
def body(published_store: PublishedModel) -> dict[str, Any]:
    """The model's warm-up example as a /rank body, as published (for tests against a server)."""
    store = ModelStore(published_store.store_dir)
    warmup = store.read_manifest(published_store.model, published_store.versions[0]).warmup[0]
    result: dict[str, Any] = warmup.model_dump(mode="json", exclude_none=True)
    return result


@pytest.fixture
def objectives(store_root: Path, model_name: str) -> list[str]:
    store = ModelStore(store_root)
    version = store.current(model_name) or store.versions(model_name)[-1]
    manifest = store.read_manifest(model_name, version)
    return [t.id for t in manifest.tasks] + [d.id for d in manifest.derived]


def rank_cases(example: dict[str, Any]) -> list[tuple[bytes, dict[str, str]]]:
    """/rank bodies with their headers: two good ones, then one for each kind of refusal (unknown
    feature, duplicate id, NaN, not JSON, not a JSON content type)."""
    json_headers = {"content-type": "application/json"}
    unknown = copy.deepcopy(example)
    unknown["candidates"][1]["features"]["no_such_feature"] = 1
    duplicate = copy.deepcopy(example)
    duplicate["candidates"][2]["id"] = duplicate["candidates"][0]["id"]
    return [
        (orjson.dumps(example), json_headers),
        (orjson.dumps({**example, "explain": False, "top_k": 2}), json_headers),
        (orjson.dumps(unknown), json_headers),
        (orjson.dumps(duplicate), json_headers),
        (
            b'{"user": {"id": "u"}, "candidates": [{"id": "a", "features": {"x": NaN}}]}',
            json_headers,
        ),
        (b"{not json", json_headers),
        (orjson.dumps(example), {"content-type": "text/plain"}),
    ]
