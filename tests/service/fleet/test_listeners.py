"""``serve --workers N`` gives each worker a socket of its own, so connections spread over them."""

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
from collections.abc import Iterator
from pathlib import Path

import pytest
from uvicorn.config import Config

from service.fleet.listeners import reuse_port_sockets, spread_supported
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.service_process import ServiceProcess, service_processes, worker_pids

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux"
)


@pytest.fixture
def two_workers(published_store: PublishedModel, tmp_path: Path) -> Iterator[ServiceProcess]:
    """``python -m service serve --workers 2`` on a copy of the published store, started."""
    store = tmp_path / "store"
    shutil.copytree(published_store.store_dir, store)
    env = {"MTRANK_MODELS_DIR": str(store), "MTRANK_MODEL": published_store.model}
    service = ServiceProcess(env, workers=2, serve=True)
    with service_processes(service):
        service.start()
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


def _burst(port: int, size: int) -> list[str]:
    """Open ``size`` connections, all before the first request; the worker behind each."""
    pool = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(size)]
    try:
        for connection in pool:
            connection.connect()
        return [_worker_of(connection) for connection in pool]
    finally:
        for connection in pool:
            connection.close()


@linux_only
@pytest.mark.slow
def test_each_worker_listens_on_its_own_socket_and_connections_reach_both(
    two_workers: ServiceProcess,
) -> None:
    """uvicorn's one shared socket let the worker woken first take 6 or 7 of 8 connections opened
    together; here the kernel picks a worker's socket for each connection."""
    service = two_workers
    assert "a socket for each of 2 workers" in service.output()
    # both workers listening: each loads the model before it listens on its socket
    started: set[str] = set()
    deadline = time.monotonic() + 60
    while len(started) < 2 and time.monotonic() < deadline:
        probe = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        started.add(_worker_of(probe))
        probe.close()
    assert len(started) == 2, f"one worker answered for 60 s:\n{service.output()}"
    assert _listening(service.port) == 2  # uvicorn's supervisor: 1, shared by both
    bursts = [_burst(service.port, 8) for _ in range(6)]
    # a burst of 8 on one of 2 workers by chance is 1 in 128; three bursts of 6, 1 in 100,000
    assert sum(len(set(workers)) == 2 for workers in bursts) >= 4, bursts


@linux_only
def test_the_sockets_share_one_port_and_a_taken_one_is_refused() -> None:
    sockets = reuse_port_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        assert ports != {0}
        assert all(sock.get_inheritable() for sock in sockets)
        with socket.socket() as taken:  # bound without SO_REUSEPORT: no one may join its port
            taken.bind(("127.0.0.1", 0))
            with pytest.raises(OSError, match="in use"):
                reuse_port_sockets("127.0.0.1", taken.getsockname()[1], 2)
    finally:
        for sock in sockets:
            sock.close()


@linux_only
def test_a_unix_socket_keeps_uvicorns_shared_socket() -> None:
    assert spread_supported(Config("service.main:create_app", port=0)) is None
    reason = spread_supported(Config("service.main:create_app", uds="/tmp/mtrank.sock"))
    assert reason is not None
    assert "unix socket" in reason


@linux_only
@pytest.mark.slow
def test_a_worker_killed_is_replaced_on_its_own_socket(two_workers: ServiceProcess) -> None:
    service = two_workers
    assert service.process is not None
    workers = worker_pids(service.process.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = worker_pids(service.process.pid)
        if len(now) == 2 and workers[0] not in now and _listening(service.port) == 2:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker {workers[0]} not replaced:\n{service.output()}")
    # the replacement serves: connections reach both workers again
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.update(_burst(service.port, 8))
    assert len(seen) == 2, service.output()


@linux_only
def test_serve_on_a_taken_port_says_so_and_exits(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: the workers cannot join it
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
