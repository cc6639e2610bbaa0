"""The front door against a real uvicorn process: slow, oversized, unauthenticated, compressed and
vanishing clients, on raw sockets and with plain Python clients.

The server runs the way ``python -m service serve`` runs it (``HeadGuardProtocol``), with a short body
deadline and keep-alive so the tests wait ~2 s, not the 10 s / 5 s defaults.
"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.cli.serve import HTTP_PROTOCOL
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import running_service
from tests.service.api.raw_http import closed_by_server, connect, open_request, read_response

pytestmark = pytest.mark.slow  # starts a server process

BODY_TIMEOUT = 1.5
KEEP_ALIVE = 1
MAX_CONCURRENCY = 4
MAX_CONNECTIONS = 8
SLOW_CLIENTS = 64  # the reproduction: 64 bodies stuck after one byte made every /rank 503
TOKEN = "front-door-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}


@dataclass
class Server:
    url: str
    log: Path

    def requests_with_status(self, endpoint: str, status: int) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        family = next(
            f for f in text_string_to_metric_families(text) if f.name == "mtrank_requests"
        )
        labels = {"endpoint": endpoint, "status": str(status)}
        return sum(s.value for s in family.samples if s.labels == labels)


@pytest.fixture(scope="module")
def server(
    published_store: PublishedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("front-door")
    token_file = root / "admin-token"
    token_file.write_text(TOKEN + "\n")
    env = {
        "MTRANK_MODELS_DIR": str(published_store.store_dir),
        "MTRANK_MODEL": published_store.model,
        "MTRANK_ADMIN_TOKEN_FILE": str(token_file),
        "MTRANK_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MTRANK_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "MTRANK_INFERENCE_THREADS": "1",
        "MTRANK_LOG_LEVEL": "DEBUG",
    }
    args = ["--http", HTTP_PROTOCOL, "--timeout-keep-alive", str(KEEP_ALIVE)]
    log = root / "server.log"
    with running_service(env, uvicorn_args=args, log_path=log) as url:
        yield Server(url, log)


def test_slow_bodies_hold_no_rank_slot_and_get_408_at_the_deadline(
    server: Server, body: dict[str, Any]
) -> None:
    before = server.requests_with_status("/rank", 408)
    with ExitStack() as stack:
        slow = [
            stack.enter_context(
                open_request(
                    server.url, "/rank", headers={**JSON, "content-length": "100000"}, body=b"{"
                )
            )
            for _ in range(SLOW_CLIENTS)
        ]
        served = httpx.post(f"{server.url}/rank", json=body, timeout=10)
        assert served.status_code == 200, served.text  # was 503: the slots were held
        for sock in slow:
            answer = read_response(sock, timeout=BODY_TIMEOUT + 5)
            assert answer.status == 408
            assert answer.json()["error"]["code"] == "request_timeout"
            assert "MTRANK_BODY_TIMEOUT_SECONDS" in answer.json()["error"]["message"]
            assert answer.headers["connection"] == "close"
    assert server.requests_with_status("/rank", 408) - before == len(slow)


def test_urllib_reads_the_413_of_a_20_mb_body(server: Server) -> None:
    candidates = [{"id": f"c{i}", "features": {"item_price": 1.5}} for i in range(400_000)]
    data = json.dumps({"user": {"id": "u"}, "candidates": candidates}).encode()
    assert len(data) > 20_000_000
    request = urllib.request.Request(f"{server.url}/rank", data=data, headers=JSON)
    with pytest.raises(urllib.error.HTTPError) as refused:  # not URLError(connection reset)
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    error = json.loads(refused.value.read())["error"]
    assert error["code"] == "payload_too_large"
    assert "MTRANK_MAX_BODY_BYTES" in error["message"]


def test_expect_100_continue_gets_413_before_sending_the_body(server: Server) -> None:
    headers = {**JSON, "content-length": str(20_000_000), "expect": "100-continue"}
    with open_request(server.url, "/rank", headers=headers) as sock:
        answer = read_response(sock)
        assert answer.status == 413  # final answer, not "100 Continue"
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock, timeout=5)


def test_unauthenticated_admin_request_is_refused_before_its_body_is_read(
    server: Server,
) -> None:
    headers = {**JSON, "content-length": str(100_000_000)}  # announced, never sent
    with open_request(server.url, "/admin/models/load", headers=headers) as sock:
        answer = read_response(sock)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    malformed = httpx.post(
        f"{server.url}/admin/models/load", content=b"{not json", headers=JSON, timeout=10
    )
    assert malformed.status_code == 401  # was 400: the body was parsed before the token check
    listed = httpx.get(f"{server.url}/admin/models", headers=AUTH, timeout=10)
    assert listed.status_code == 200  # the token came from MTRANK_ADMIN_TOKEN_FILE


def test_admin_body_over_the_admin_limit_gets_413(server: Server) -> None:
    padding = {"version": "v" * 100_000}
    response = httpx.post(f"{server.url}/admin/models/load", json=padding, headers=AUTH)
    assert response.status_code == 413
    assert "MTRANK_MAX_ADMIN_BODY_BYTES" in response.json()["error"]["message"]


def test_disconnect_mid_body_is_counted_as_499_and_logged_at_debug(server: Server) -> None:
    before_500 = server.requests_with_status("/rank", 500)
    before_499 = server.requests_with_status("/rank", 499)
    for _ in range(3):
        sock = open_request(
            server.url, "/rank", headers={**JSON, "content-length": "100000"}, body=b'{"user"'
        )
        sock.close()
    deadline_passed = httpx.get(f"{server.url}/healthz")  # the server has run its loop since
    assert deadline_passed.status_code == 200
    for _ in range(50):
        if server.requests_with_status("/rank", 499) - before_499 == 3:
            break
        httpx.get(f"{server.url}/healthz")
    assert server.requests_with_status("/rank", 499) - before_499 == 3
    assert server.requests_with_status("/rank", 500) == before_500
    log = server.log.read_text()
    assert "client disconnected before POST /rank was answered" in log
    assert "ERROR" not in log
    assert "Traceback" not in log


def test_gzip_bodies_are_decoded_and_a_gzip_bomb_gets_413(
    server: Server, body: dict[str, Any]
) -> None:
    plain = httpx.post(f"{server.url}/rank", json=body, timeout=10)
    packed = httpx.post(
        f"{server.url}/rank",
        content=gzip.compress(json.dumps(body).encode()),
        headers={**JSON, "content-encoding": "gzip"},
        timeout=10,
    )
    assert packed.status_code == 200, packed.text
    assert packed.json()["items"] == plain.json()["items"]
    bomb = gzip.compress(b" " * 200_000_000)  # 200 MB of JSON whitespace in ~200 KB
    refused = httpx.post(
        f"{server.url}/rank", content=bomb, headers={**JSON, "content-encoding": "gzip"}
    )
    assert refused.status_code == 413
    assert "decoded" in refused.json()["error"]["message"]
    other = httpx.post(
        f"{server.url}/rank", json=body, headers={"content-encoding": "br"}, timeout=10
    )
    assert other.status_code == 415


def test_method_not_allowed_names_the_allowed_methods(server: Server) -> None:
    response = httpx.get(f"{server.url}/rank")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_idle_and_slow_head_connections_are_closed_and_starve_nobody(
    server: Server, body: dict[str, Any]
) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(server.url, b"")) for _ in range(32)]
        slow_heads = [
            stack.enter_context(connect(server.url, b"POST /rank HTTP/1.1\r\nhost: x\r\n"))
            for _ in range(32)
        ]
        assert httpx.post(f"{server.url}/rank", json=body, timeout=10).status_code == 200
        for sock in idle + slow_heads:
            assert closed_by_server(sock, timeout=KEEP_ALIVE + 5)


def test_an_endless_request_head_gets_431(server: Server) -> None:
    with connect(server.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n") as sock:
        sock.sendall(b"x-pad: " + b"a" * 100_000 + b"\r\n")
        answer = read_response(sock)
    assert answer.status == 431
    assert answer.json()["error"]["code"] == "request_head_too_large"


def test_serve_command_closes_idle_connections_and_bounds_them_in_total(
    published_store: PublishedModel,
) -> None:
    """Idle connections past ``MTRANK_MAX_CONNECTIONS`` get new requests a 503 (the documented
    bound), and ``MTRANK_KEEP_ALIVE_SECONDS`` closes them, so they cannot starve others for long."""
    env = {
        "MTRANK_MODELS_DIR": str(published_store.store_dir),
        "MTRANK_MODEL": published_store.model,
        "MTRANK_KEEP_ALIVE_SECONDS": "2",
        "MTRANK_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "MTRANK_INFERENCE_THREADS": "1",
    }
    with running_service(env, entry="serve") as url, ExitStack() as stack:
        assert httpx.get(f"{url}/healthz").status_code == 200
        idle = [stack.enter_context(connect(url)) for _ in range(MAX_CONNECTIONS - 1)]
        idle.append(stack.enter_context(connect(url, b"GET /heal")))  # a head never finished
        crowded = [httpx.get(f"{url}/healthz").status_code for _ in range(3)]
        assert 503 in crowded, crowded  # the server counts its connections, not the kernel's
        for sock in idle:
            assert closed_by_server(sock, timeout=8)
        assert httpx.get(f"{url}/healthz").status_code == 200
