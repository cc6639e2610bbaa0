"""``serve --workers N``: the supervisor hands each connection to the worker holding the fewest."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from uvicorn.config import Config

from service.fleet.balancer import balance_supported, listening_socket
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.service_process import ServiceProcess, service_processes, worker_pids

REPORTED = 0.5
"""Seconds for a closed connection's report to reach the supervisor (it takes milliseconds)."""


@pytest.fixture
def two_workers(published_store: PublishedModel, tmp_path: Path) -> Iterator[ServiceProcess]:
    """``python -m service serve --workers 2`` on a copy of the published store, both workers
    answering."""
    store = tmp_path / "store"
    shutil.copytree(published_store.store_dir, store)
    env = {"MTRANK_MODELS_DIR": str(store), "MTRANK_MODEL": published_store.model}
    service = ServiceProcess(env, workers=2, serve=True)
    with service_processes(service):
        service.start()
        _wait_for_workers(service, 2)
        yield service


def _worker_of(connection: http.client.HTTPConnection) -> str:
    """The worker answering on ``connection``: the process label of its /metrics."""
    connection.request("GET", "/metrics")
    answer = connection.getresponse()
    text = answer.read().decode()
    assert answer.status == 200, text[:500]
    found = re.search(r'^mtrank_model_info\{[^}]*process="([^"]+)"', text, re.M)
    assert found is not None, text[:2000]
    return found.group(1)


def _listening(port: int) -> int:
    """Listening TCP sockets on ``port`` (``/proc/net/tcp``, state 0A)."""
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A")


def _opened(port: int, size: int) -> list[http.client.HTTPConnection]:
    """``size`` connections, all opened before the first request."""
    pool = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(size)]
    for connection in pool:
        connection.connect()
    return pool


def _burst(port: int, size: int) -> list[str]:
    """Open ``size`` connections, all before the first request; the worker behind each. They are
    closed, and their closes counted by the supervisor, before this returns."""
    pool = _opened(port, size)
    try:
        return [_worker_of(connection) for connection in pool]
    finally:
        for connection in pool:
            connection.close()
        time.sleep(REPORTED)


def _wait_for_workers(service: ServiceProcess, count: int) -> None:
    """Until ``count`` workers answer (each loads the model before it takes connections)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        seen.update(_burst(service.port, count))
    assert len(seen) == count, f"{len(seen)} of {count} workers answered:\n{service.output()}"


@pytest.mark.slow
def test_connections_opened_together_split_evenly_over_the_workers(
    two_workers: ServiceProcess,
) -> None:
    """uvicorn's one shared socket let the worker woken first take 6 or 7 of 8 connections opened
    together, and one socket per worker (``SO_REUSEPORT``) split them by a hash: 4/4 only 27 % of
    the time. The supervisor accepts them all and splits them exactly."""
    service = two_workers
    assert "each connection handed to the one of 2 workers holding the fewest" in service.output()
    assert _listening(service.port) == 1  # the supervisor's; the workers listen on nothing
    for _ in range(4):
        assert sorted(Counter(_burst(service.port, 8)).values()) == [4, 4]


@pytest.mark.slow
def test_a_new_connection_goes_to_the_worker_whose_connections_closed(
    two_workers: ServiceProcess,
) -> None:
    service = two_workers
    pool = _opened(service.port, 8)
    try:
        workers = [_worker_of(connection) for connection in pool]
        assert sorted(Counter(workers).values()) == [4, 4]
        emptied = workers[0]
        for connection, worker in zip(pool, workers, strict=True):
            if worker == emptied:
                connection.close()
        time.sleep(REPORTED)
        # the other worker still holds 4: the next 4 all go to the one that holds none
        assert _burst(service.port, 4) == [emptied] * 4
    finally:
        for connection in pool:
            connection.close()


@pytest.mark.slow
def test_a_worker_killed_is_replaced_and_takes_its_share(two_workers: ServiceProcess) -> None:
    service = two_workers
    assert service.process is not None
    workers = worker_pids(service.process.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = worker_pids(service.process.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker {workers[0]} not replaced:\n{service.output()}")
    _wait_for_workers(service, 2)  # the replacement serves once it has loaded the model
    assert sorted(Counter(_burst(service.port, 8)).values()) == [4, 4]


@pytest.mark.slow
def test_sigttin_adds_a_worker_and_sigttou_retires_one(two_workers: ServiceProcess) -> None:
    service = two_workers
    assert service.process is not None
    service.signal(signal.SIGTTIN)
    _wait_for_workers(service, 3)
    assert sorted(Counter(_burst(service.port, 9)).values()) == [3, 3, 3]
    service.signal(signal.SIGTTOU)
    deadline = time.monotonic() + 60
    while len(worker_pids(service.process.pid)) != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(worker_pids(service.process.pid)) == 2, service.output()
    assert sorted(Counter(_burst(service.port, 8)).values()) == [4, 4]


def test_the_listening_socket_refuses_a_taken_port() -> None:
    listener = listening_socket("127.0.0.1", 0, 16)
    try:
        assert listener.getsockname()[1] != 0
        assert not listener.getblocking()
        with pytest.raises(OSError, match="in use"):
            listening_socket("127.0.0.1", listener.getsockname()[1], 16)
    finally:
        listener.close()


def test_a_unix_socket_keeps_uvicorns_shared_socket() -> None:
    assert balance_supported(Config("service.main:create_app", port=0)) is None
    reason = balance_supported(Config("service.main:create_app", uds="/tmp/mtrank.sock"))
    assert reason is not None
    assert "unix socket" in reason


def test_serve_on_a_taken_port_says_so_and_exits(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTRANK_")}
        env["MTRANK_MODELS_DIR"] = str(tmp_path)  # nothing published: serve starts not ready
        done = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "choose another --port" in done.stderr
