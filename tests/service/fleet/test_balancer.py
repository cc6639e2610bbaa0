"""The supervisor's connection balancer, driven by channels standing in for workers."""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from collections.abc import Iterator

import pytest

from service.fleet.balancer import PAUSE_SECONDS, Balancer, listening_socket
from service.fleet.handoff import CLOSED, CONNECTION, READY


class FakeWorker:
    """The worker's end of a channel: says what a worker says, keeps what it is given."""

    def __init__(self, balancer: Balancer) -> None:
        self.key, self.channel = balancer.attach()
        self.held: list[socket.socket] = []

    def ready(self) -> FakeWorker:
        self.channel.sendall(READY)
        return self

    def take(self, wait: float = 0.3) -> int:
        """Connections handed over within ``wait`` seconds of the last one."""
        taken = 0
        while select.select([self.channel], [], [], wait)[0]:
            data, descriptors, _, _ = socket.recv_fds(self.channel, 64, 64)
            if not data:
                break
            assert data == CONNECTION * len(descriptors)
            self.held += [socket.socket(fileno=fd) for fd in descriptors]
            taken += len(descriptors)
        return taken

    def close(self, count: int) -> None:
        for _ in range(count):
            self.held.pop().close()
        self.channel.sendall(CLOSED * count)

    def leave(self) -> None:
        for sock in [*self.held, self.channel]:
            sock.close()


class Clients:
    """The test's client connections and fake workers, all closed when the test ends."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.workers: list[FakeWorker] = []

    def worker(self, balancer: Balancer) -> FakeWorker:
        self.workers.append(FakeWorker(balancer))
        return self.workers[-1]

    def connect(self, balancer: Balancer, count: int) -> list[socket.socket]:
        port = balancer.listener.getsockname()[1]
        opened = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.sockets += opened
        return opened


@pytest.fixture
def balancer() -> Iterator[Balancer]:
    running = Balancer(listening_socket("127.0.0.1", 0, 64))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        for sock in made.sockets:
            sock.close()
        for worker in made.workers:
            worker.leave()


def _settled(balancer: Balancer, holding: dict[int, int]) -> None:
    """Until the balancer counts ``holding`` (reports arrive on its thread)."""
    deadline = time.monotonic() + 5
    while balancer.holding() != holding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert balancer.holding() == holding


def test_connections_split_evenly_and_follow_closes(balancer: Balancer, clients: Clients) -> None:
    first, second = clients.worker(balancer).ready(), clients.worker(balancer).ready()
    clients.connect(balancer, 8)
    assert (first.take(), second.take()) == (4, 4)
    first.close(4)
    _settled(balancer, {first.key: 0, second.key: 4})
    clients.connect(balancer, 4)
    assert (first.take(), second.take()) == (4, 0)  # the one holding none takes all four


def test_a_worker_gets_connections_only_once_ready(balancer: Balancer, clients: Clients) -> None:
    loading, ready = clients.worker(balancer), clients.worker(balancer).ready()
    clients.connect(balancer, 3)
    assert (loading.take(), ready.take()) == (0, 3)


def test_connections_wait_until_a_worker_is_ready(balancer: Balancer, clients: Clients) -> None:
    worker = clients.worker(balancer)
    clients.connect(balancer, 5)  # the kernel completes them; the balancer leaves them queued
    assert worker.take() == 0
    worker.ready()
    assert worker.take() == 5


def test_a_worker_gone_or_detached_gets_nothing_more(balancer: Balancer, clients: Clients) -> None:
    gone, detached, serving = (clients.worker(balancer).ready() for _ in range(3))
    _settled(balancer, {gone.key: 0, detached.key: 0, serving.key: 0})
    gone.channel.close()  # the worker died: its channel ends
    balancer.detach(detached.key)  # retired by the supervisor: it sees its channel end
    assert detached.take() == 0  # the end of the channel, nothing handed
    _settled(balancer, {serving.key: 0})
    clients.connect(balancer, 4)
    assert serving.take() == 4


def test_the_worker_holds_the_clients_connection_itself(
    balancer: Balancer, clients: Clients
) -> None:
    worker = clients.worker(balancer).ready()
    (client,) = clients.connect(balancer, 1)
    assert worker.take() == 1
    served = worker.held[0]
    assert served.getpeername() == client.getsockname()
    client.sendall(b"ping")
    assert served.recv(4) == b"ping"
    served.sendall(b"pong")
    assert client.recv(4) == b"pong"


class ShortOfDescriptors(socket.socket):
    """A listening socket whose first ``failures`` accepts fail as with no descriptor left."""

    failures = 2

    def accept(self) -> tuple[socket.socket, object]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_accepting_resumes_after_running_out_of_descriptors(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    plain = listening_socket("127.0.0.1", 0, 64)
    running = Balancer(ShortOfDescriptors(fileno=plain.detach()))
    running.start()
    try:
        worker = clients.worker(running).ready()
        _settled(running, {worker.key: 0})
        with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
            clients.connect(running, 1)
            assert worker.take(wait=2 * PAUSE_SECONDS + 1) == 1  # after two pauses, not never
        assert caplog.text.count("raise the open-file limit") == 1  # two failures, one warning
    finally:
        running.stop()
