"""The front door in process: admin check before the body, body limits, decoding, and the OpenAPI
document listing every status. (The same behaviour over real sockets: test_front_door_uvicorn.py.)"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from fastapi.routing import APIRoute

from service.admin_auth import ADMIN_PREFIX
from service.dependencies import require_admin
from service.front_door import _flat_routes
from tests.service.api.conftest import ADMIN_TOKEN, AppClient, MakeApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("token", "status"), [(ADMIN_TOKEN, 401), (None, 403)], ids=["wrong_token", "admin_disabled"]
)
def test_admin_refuses_before_parsing_a_malformed_body(
    make_app: MakeApp, token: str | None, status: int
) -> None:
    with AppClient(make_app(admin_token=token)) as client:
        response = client.post("/admin/models/load", content=b"{not json", headers=JSON)
        assert response.status_code == status  # was 400: parsed before the token check
        assert response.headers["connection"] == "close"
        metrics = client.get("/metrics").text
    assert (
        f'mtrank_requests_total{{endpoint="/admin/models/load",status="{status}"}} 1.0' in metrics
    )


def test_admin_bodies_have_their_own_small_limit(make_app: MakeApp) -> None:
    with AppClient(make_app(max_admin_body_bytes=1024)) as client:
        big = client.post("/admin/models/load", json={"version": "v" * 2000}, headers=AUTH)
        assert big.status_code == 413
        assert "MTRANK_MAX_ADMIN_BODY_BYTES" in big.json()["error"]["message"]
        small = client.post("/admin/models/load", json={"version": "nope"}, headers=AUTH)
        assert small.status_code == 404  # within the limit: on to the handler


def test_every_admin_route_is_guarded_before_its_body_is_read(make_app: MakeApp) -> None:
    """The front door checks the token on every path under ADMIN_PREFIX; a route that requires the
    admin token elsewhere would be checked only after FastAPI read its body."""
    app = make_app()
    guarded = [
        route.path
        for route in _flat_routes(app.routes)
        if isinstance(route, APIRoute)
        and any(dep.call is require_admin for dep in route.dependant.dependencies)
    ]
    assert guarded
    assert all(path.startswith(ADMIN_PREFIX + "/") for path in guarded), guarded


def test_gzip_body_scores_like_the_plain_one(client: AppClient, example: dict[str, Any]) -> None:
    plain = client.post("/rank", json=example)
    text = plain.request.content
    half = len(text) // 2
    two_members = gzip.compress(text[:half]) + gzip.compress(text[half:])  # RFC 1952 allows it
    for encoded in (gzip.compress(text), two_members):
        packed = client.post("/rank", content=encoded, headers={**JSON, "content-encoding": "gzip"})
        assert packed.status_code == 200, packed.text
        assert packed.json()["items"] == plain.json()["items"]


@pytest.mark.parametrize(
    ("content", "encoding", "status"),
    [
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b'{"user": {"id": "u"}}')[:-12], "gzip", 400),
        (zlib.compress(b"{}"), "deflate", 415),
        (b"{}", "br", 415),
        (gzip.compress(gzip.compress(b"{}")), "gzip, gzip", 415),
    ],
    ids=["not_gzip", "truncated_gzip", "deflate", "br", "stacked_encodings"],
)
def test_undecodable_or_unsupported_encodings_get_a_json_error(
    client: AppClient, content: bytes, encoding: str, status: int
) -> None:
    response = client.post("/rank", content=content, headers={**JSON, "content-encoding": encoding})
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_a_gzip_bomb_is_refused_after_the_limit_in_decoded_bytes(make_app: MakeApp) -> None:
    bomb = gzip.compress(b" " * 50_000_000)
    assert len(bomb) < 100_000
    with AppClient(make_app(max_body_bytes=1_000_000)) as client:
        response = client.post("/rank", content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decoded" in response.json()["error"]["message"]


def test_405_names_the_allowed_methods(client: AppClient) -> None:
    for method, path, allowed in (("GET", "/rank", "POST"), ("POST", "/healthz", "GET")):
        response = client.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_openapi_lists_every_status_each_route_can_answer(client: AppClient) -> None:
    doc = client.get("/openapi.json").json()
    statuses = {
        (method, path): set(operation["responses"])
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    }
    assert {"200", "400", "408", "413", "415", "422", "503"} <= statuses[("post", "/rank")]
    assert {"200", "400", "401", "403", "404", "408", "409", "413", "415", "422"} <= statuses[
        ("post", "/admin/models/load")
    ]
    assert {"401", "403"} <= statuses[("get", "/admin/models")]
    assert "503" in statuses[("get", "/readyz")]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":  # every error is {"error": {...}}, not FastAPI's {"detail"}
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                        method,
                        path,
                        status,
                    )
    assert "HTTPValidationError" not in doc["components"]["schemas"]
