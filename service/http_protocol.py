"""uvicorn's httptools protocol with two bounds on the request head that uvicorn lacks.

uvicorn closes a keep-alive connection that stays idle ``--timeout-keep-alive`` seconds after a
response, but a connection that never sends a byte, or sends its request head a byte at a time, stays
open for ever, and with httptools the request head has no size limit (a client streaming header lines
grows the process without bound). :class:`HeadGuardProtocol` adds:

* a deadline: the request head must be complete within ``--timeout-keep-alive`` seconds of the
  connection opening or of the previous response, else the connection is closed;
* a size limit: a head larger than :data:`MAX_HEAD_BYTES` gets 431 and the connection is closed.

``python -m service serve`` uses it; with uvicorn itself pass
``--http service.http_protocol:HeadGuardProtocol``. The body has its own deadline and size limit in
the app (``service/front_door.py``).
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers; nginx's default ``large_client_header_buffers`` allows 4 x 8 KiB."""


class HeadGuardProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a deadline and a size limit on each request head."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_pending = False
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_pending:  # the head did not end in this chunk: count it
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head()

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # a pipelined request already has its head
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._head_done()
        self._head_pending = True
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timeout)

    def _head_done(self) -> None:
        self._head_pending = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._head_pending and not busy and not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        self._head_done()
        body = orjson.dumps(
            {
                "error": {
                    "code": "request_head_too_large",
                    "message": f"request line and headers exceed {MAX_HEAD_BYTES} bytes",
                    "field": None,
                }
            }
        )
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()
