"""SIGTERM drain: stop being ready at once, keep serving a short while, then let uvicorn stop.

On SIGTERM (``docker stop``, Kubernetes, uvicorn's supervisor stopping a worker):

1. ``/readyz`` answers 503 at once, and every response carries ``Connection: close`` so clients
   open their next request elsewhere instead of reusing a connection about to close;
2. after ``MTRANK_DRAIN_SECONDS`` (default 3: time for a load balancer to see the 503 and stop
   sending), uvicorn's own handler runs: it stops accepting connections and waits for in-flight
   requests; the app's shutdown then closes Redis connections and releases onnxruntime sessions;
3. requests still running ``MTRANK_SHUTDOWN_GRACE_SECONDS`` (default 10) later are cut (uvicorn's
   forced exit);
4. a process still alive :data:`HARD_EXIT_SECONDS` after that exits at once with status 1, from a
   thread of its own: uvicorn's forced exit does not interrupt the app's shutdown once it has
   begun, and an event loop stuck in it (or blocked) would otherwise keep the process, and a
   ``--workers`` supervisor waiting for it, alive for good. So shutting down is bounded.

A second SIGTERM, or SIGINT (Ctrl-C), skips the wait. The handler is only installed when the app
runs on the main thread (uvicorn); in-process test clients never see it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any] | int | None

HARD_EXIT_SECONDS = 5.0
"""After the drain and the grace period, how long a process may still take to exit."""


class Drain:
    """The process-wide drain state and its SIGTERM handler."""

    def __init__(
        self,
        delay_seconds: float,
        grace_seconds: float,
        *,
        hard_exit_seconds: float = HARD_EXIT_SECONDS,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        self.delay_seconds = delay_seconds
        self.grace_seconds = grace_seconds
        self.hard_exit_seconds = hard_exit_seconds
        self.exit_process = exit_process
        self.draining = False
        self._previous: Handler = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: threading.Timer | None = None

    def is_draining(self) -> bool:
        return self.draining

    def install(self) -> bool:
        """Chain our SIGTERM handler in front of the server's; False off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def uninstall(self) -> None:
        if self._loop is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        self._loop = None

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self.draining or self._loop is None:
            self._forward(sig, frame)  # a second SIGTERM: stop now
            return
        self.draining = True
        logger.warning(
            "SIGTERM: not ready any more; serving %g s more, then finishing in-flight requests "
            "(at most %g s)",
            self.delay_seconds,
            self.grace_seconds,
        )
        self._loop.call_later(self.delay_seconds, self._stop, sig, frame)
        bound = self.delay_seconds + self.grace_seconds + self.hard_exit_seconds
        self._watchdog = threading.Timer(bound, self._exit_now, (bound,))
        self._watchdog.daemon = True  # never keeps a process that is exiting on its own alive
        self._watchdog.start()

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self._forward(sig, frame)
        if self._loop is not None:
            self._loop.call_later(self.grace_seconds, self._force, frame)

    def _force(self, frame: FrameType | None) -> None:
        logger.error("in-flight requests still running after %g s: exiting", self.grace_seconds)
        self._forward(signal.SIGINT, frame)  # uvicorn: a second signal forces the exit

    def _exit_now(self, bound: float) -> None:
        logger.error(
            "still running %g s after SIGTERM (the app's shutdown did not finish): exiting now "
            "with status 1",
            bound,
        )
        self.exit_process(1)

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)


class DrainMiddleware:
    """While draining, every response says ``Connection: close``."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        await self.app(scope, receive, closing_when_draining(self.drain, send))


def closing_when_draining(drain: Drain, send: Send) -> Send:
    """``send``, adding ``Connection: close`` to a response that starts while ``drain`` is on."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start" and drain.draining:
            headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_closing
