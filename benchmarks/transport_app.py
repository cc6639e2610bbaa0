"""The transport floor of the serving comparison: an HTTP server that only moves the bytes.

    python benchmarks/transport_app.py --answers DIR --port 8004

It reads each keep-alive HTTP/1.1 request (head, then ``Content-Length`` bytes of body) and answers
``200`` with a stored body, chosen by the request body's length: ``DIR/answer-<length>.json`` holds
mtrank's answer to the request of that length (``serving_compare.py`` asks mtrank for them first).
The head and the answer go out in one write, prepared at start. Nothing is parsed, scored or
encoded: what it takes is what any server on this host, in Python on uvloop as mtrank is, pays to
take the same request bytes in from the same client and put the same answer bytes out over
loopback (the system calls, the kernel's TCP path, waking the client and being woken by it). A
request of a length it holds no answer for gets a 404 naming the length.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import cast

import uvloop

HEAD_LIMIT = 64 * 1024


def answers_in(folder: Path) -> dict[int, bytes]:
    """``{request body length: the whole HTTP response}`` from ``answer-<length>.json`` files."""
    found = {
        int(path.stem.removeprefix("answer-")): response(b"200 OK", path.read_bytes())
        for path in folder.glob("answer-*.json")
    }
    if not found:
        raise SystemExit(f"no answer-<length>.json files in {folder}: nothing to answer with")
    return found


def response(status: bytes, body: bytes) -> bytes:
    """A whole HTTP/1.1 response with a JSON body."""
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % (status, len(body)) + body


def not_found(length: int) -> bytes:
    detail = b'{"detail":"no stored answer for a request body of %d bytes"}' % length
    return response(b"404 Not Found", detail)


class Answering(asyncio.Protocol):
    """One connection: requests read whole, each answered by its body's length."""

    def __init__(self, answers: dict[int, bytes]) -> None:
        self.answers = answers
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > HEAD_LIMIT:
                    self.transport.close()
                return
            length = _content_length(bytes(self.buffer[:end]))
            if length < 0:  # no length: not a request this server takes
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.answers.get(length) or not_found(length))

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 (asyncio's signature)
        self.transport = None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value) if value.strip().isdigit() else -1
    return -1


async def serve(answers: dict[int, bytes], port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Answering(answers), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--answers", type=Path, required=True, help="answer-<length>.json files")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(answers_in(args.answers), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
