"""``benchmarks/transport_app.py``: the comparison's transport floor answers each request with the
stored answer for its body's length, over keep-alive, however the request's bytes arrive."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.transport_app import SCRIPT, running_transport_app
from tests.fixtures.uvicorn_server import free_port


def request(body: bytes) -> bytes:
    return b"POST /rank HTTP/1.1\r\nhost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Answers:
    """Answers read off one connection in order; bytes past one answer are the next one's."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> tuple[int, bytes]:
        """(status, body) of the next answer (it has a ``content-length``)."""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return int(head.split(b" ")[1]), rest[:length]


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "answer-5.json").write_bytes(b'{"items":[]}')
    (tmp_path / "answer-70000.json").write_bytes(b'{"items":[' + b"0," * 40_000 + b"1]}")
    with running_transport_app(tmp_path) as port:
        yield port


def test_answers_by_length_on_one_connection_whatever_the_packets(
    transport: int, tmp_path: Path
) -> None:
    big = (tmp_path / "answer-70000.json").read_bytes()
    with socket.create_connection(("127.0.0.1", transport)) as sock:
        answers = Answers(sock)
        sock.sendall(request(b"hello"))
        assert answers.next() == (200, b'{"items":[]}')
        whole = request(b"x" * 70_000)  # a body larger than one read, its head sent in pieces
        for start in range(0, len(whole), 7_001):
            sock.sendall(whole[start : start + 7_001])
            time.sleep(0.001)
        assert answers.next() == (200, big)
        sock.sendall(request(b"hello") + request(b"hello"))  # two requests in one packet
        assert answers.next() == (200, b'{"items":[]}')
        assert answers.next() == (200, b'{"items":[]}')
        assert answers.buffer == b""  # nothing sent beyond the answers
        sock.sendall(request(b"abc"))  # no answer stored for 3 bytes: said, and still connected
        status, body = answers.next()
        assert status == 404
        assert b"3 bytes" in body
        sock.sendall(request(b"hello"))
        assert answers.next() == (200, b'{"items":[]}')


def test_refuses_to_start_without_answers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--answers", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "no answer-<length>.json files" in done.stderr
