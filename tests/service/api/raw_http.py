"""Raw-socket HTTP/1.1 for tests that need what httpx will not do: stall, send half a body, vanish."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def connect(base_url: str, data: bytes = b"") -> socket.socket:
    """A connection to the server, after sending ``data`` (part of a request head, or nothing)."""
    sock = socket.create_connection(address(base_url), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def open_request(
    base_url: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    method: str = "POST",
) -> socket.socket:
    """Connect and send the request head plus ``body`` (which may be only part of the body)."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {address(base_url)[0]}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return connect(base_url, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def read_response(sock: socket.socket, timeout: float = 10.0) -> RawResponse:
    """Read one response (head, then ``content-length`` bytes or until the server closes)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """``True`` once the server closes ``sock`` (EOF or reset) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True
