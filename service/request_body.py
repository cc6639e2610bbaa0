"""Receiving a request body from the ASGI server: size limit, gzip, and draining.

:func:`receive_body` reads the whole body under a size limit that applies to the *decoded* bytes (so a
gzip bomb is refused after at most ``limit + 1`` inflated bytes); the front door runs it under a
deadline so a client trickling bytes cannot hold a request open. :func:`drain` discards what is left
of a refused body so that a client still sending it can read the answer instead of a reset connection.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from service.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = ("identity", "gzip")
"""Content-Encoding values the service decodes (zstd and br would need a new dependency)."""


class BodyDecoder(Protocol):
    def feed(self, chunk: bytes) -> None:
        """Take the next received chunk; raise :class:`PayloadTooLarge` past the limit."""

    def finish(self) -> bytes:
        """The whole decoded body, once the last chunk was fed."""


class _Identity:
    def __init__(self, limit: int, limit_name: str) -> None:
        self._chunks: list[bytes] = []
        self._limit = limit
        self._room = limit
        self._limit_name = limit_name

    def feed(self, chunk: bytes) -> None:
        self._room -= len(chunk)
        if self._room < 0:
            raise PayloadTooLarge(
                f"request body exceeds {self._limit} bytes ({self._limit_name}; decoded size if "
                "compressed): send a smaller body, e.g. fewer candidates per request"
            )
        self._chunks.append(chunk)

    def finish(self) -> bytes:
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


class _Gzip(_Identity):
    """Inflates as chunks arrive, never more than the room left (+1 byte to notice the overflow)."""

    def __init__(self, limit: int, limit_name: str) -> None:
        super().__init__(limit, limit_name)
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> None:
        data = chunk
        try:
            while data:
                if self._inflate.eof:  # another gzip member follows (RFC 1952 allows several)
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                super().feed(self._inflate.decompress(data, max(self._room, 0) + 1))
                data = self._inflate.unconsumed_tail or self._inflate.unused_data
        except zlib.error as exc:
            raise MalformedBody(f"body is not valid gzip ({exc}): compress it with gzip") from None

    def finish(self) -> bytes:
        if not self._inflate.eof:
            raise MalformedBody("gzip body is truncated: send the whole compressed stream")
        return super().finish()


def body_decoder(encoding: str | None, limit: int, limit_name: str) -> BodyDecoder:
    """A decoder for ``Content-Encoding: encoding`` with ``limit`` decoded bytes; 415 if unsupported."""
    if encoding is None:
        return _Identity(limit, limit_name)
    value = encoding.strip().lower()
    if value == "identity":
        return _Identity(limit, limit_name)
    if value in ("gzip", "x-gzip"):
        return _Gzip(limit, limit_name)
    raise UnsupportedMediaType(
        f"content encoding {encoding!r} is not supported: send the body uncompressed or as "
        f"{' or '.join(ENCODINGS[1:])}",
    )


async def receive_body(receive: Receive, decoder: BodyDecoder) -> bytes:
    """The decoded body; :class:`~starlette.requests.ClientDisconnect` if the client goes away
    first. The caller bounds the time (``asyncio.timeout``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        decoder.feed(message.get("body", b""))
        if not message.get("more_body", False):
            return decoder.finish()


async def drain(receive: Receive, max_bytes: int) -> bool:
    """Discard the rest of a body, at most ``max_bytes``; ``True`` if the body ended (the connection
    can carry an answer), ``False`` if the client sent more or went away. The caller bounds the time."""
    left = max_bytes
    while left >= 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        left -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return left >= 0
    return False
