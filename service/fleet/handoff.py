"""The worker's side of ``--workers N``: connections arrive from the supervisor, not from a socket.

The supervisor (:mod:`service.fleet.balancer`) accepts every connection and passes its descriptor
over a Unix socket pair, the channel, to the worker that holds the fewest. A worker's
:class:`HandoffServer` is uvicorn's server with no listening socket: it reads descriptors from the
channel and serves each with the configured HTTP protocol, exactly as a connection it had accepted
itself (the same protocol objects, limits, keep-alive and graceful shutdown). On the channel the
worker writes one byte of its own for each event the supervisor counts:

* :data:`READY` once, when the app has started (the model is loaded): only then does the
  supervisor send it connections;
* :data:`CLOSED` for each connection that has closed, so the supervisor knows what each holds.

When the channel ends (the supervisor stopped, or retired this worker), the worker serves the
connections it has until they close, and takes no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable

from uvicorn import Server
from uvicorn.supervisors.multiprocess import Process

logger = logging.getLogger("uvicorn.error")

CONNECTION = b"n"
"""Supervisor to worker: the byte that carries a connection's descriptor."""
READY = b"r"
"""Worker to supervisor: the app has started; send connections."""
CLOSED = b"c"
"""Worker to supervisor: one connection it was given has closed."""

MAX_DESCRIPTORS = 64
"""Descriptors taken from the channel in one read (one message carries one)."""

ProtocolFactory = Callable[[], asyncio.Protocol]


class HandoffServer(Server):
    """uvicorn's server taking its connections from a channel (the one socket it is given)."""

    _channel: socket.socket | None = None
    _outbox = b""  # reports a full channel did not take yet

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no listening socket: nothing to accept from
        if not sockets or self.should_exit:
            return
        self._channel = sockets[0]
        self._channel.setblocking(False)
        self._adopting: set[asyncio.Task[object]] = set()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._channel.fileno(), self._receive, self._protocol_factory())
        self._report(READY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_receiving()  # closes the channel, the one socket in ``sockets``
        await super().shutdown(sockets)

    def _protocol_factory(self) -> ProtocolFactory:
        """uvicorn's protocol as its own server builds it, reporting to the channel when it closes."""
        build = functools.partial(
            self.config.http_protocol_class,  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )

        def counted() -> asyncio.Protocol:
            protocol: asyncio.Protocol = build()
            lost = protocol.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                try:
                    lost(exc)
                finally:
                    self._report(CLOSED)

            protocol.connection_lost = connection_lost  # type: ignore[method-assign]
            return protocol

        return counted

    def _receive(self, factory: ProtocolFactory) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            data, descriptors, _, _ = socket.recv_fds(channel, MAX_DESCRIPTORS, MAX_DESCRIPTORS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, descriptors = b"", []
        for descriptor in descriptors:
            self._adopt(socket.socket(fileno=descriptor), factory)
        if not data:  # the supervisor closed its end: serve what is open, take nothing more
            self._stop_receiving()

    def _adopt(self, sock: socket.socket, factory: ProtocolFactory) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(factory, sock))
        self._adopting.add(task)
        task.add_done_callback(functools.partial(self._adopted, sock))

    def _adopted(self, sock: socket.socket, task: asyncio.Task[object]) -> None:
        self._adopting.discard(task)
        if task.cancelled() or task.exception() is not None:  # never served: count it closed
            if not task.cancelled():
                logger.warning("a connection from the supervisor could not be served: %s",
                               task.exception())  # fmt: skip
            sock.close()
            self._report(CLOSED)

    def _report(self, event: bytes) -> None:
        """Tell the supervisor; what a full channel does not take now goes with the next report."""
        channel = self._channel
        if channel is None:
            return
        self._outbox += event
        try:
            sent = channel.send(self._outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the supervisor is gone; its successor (if any) does not count ours
            self._stop_receiving()
            return
        self._outbox = self._outbox[sent:]

    def _stop_receiving(self) -> None:
        channel, self._channel = self._channel, None
        if channel is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (startup failed)
            asyncio.get_running_loop().remove_reader(channel.fileno())
        channel.close()


class HandoffProcess(Process):
    """uvicorn's worker process running :class:`HandoffServer` on the channel it is given."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = HandoffServer(config=self.config)
        return self._server
