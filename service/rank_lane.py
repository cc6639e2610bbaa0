"""The rank lane: an ordinary ``POST /rank`` answered in front of the app's middleware chain.

Every request crosses about ten ASGI layers (Starlette's error and exception middleware, FastAPI's,
the drain, the request metrics, the front door, the router) before ``/rank`` runs, each an
``async`` call and most a wrapped ``send``: about 0.1 ms of a request's CPU, a tenth of the whole
at 100 candidates. The lane is the outermost layer and takes only a request whose handling by those
layers is known in advance:

* ``POST /rank`` outside a ``root_path`` mount, while the process is not draining;
* a body of declared length within ``MTRANK_MAX_BODY_BYTES``, neither compressed nor chunked, and
  no ``Expect: 100-continue`` (what the front door would only receive, see
  :meth:`RequestHead.plain_body_within`);
* that body arriving as one message, within the front door's deadline.

It then does what the route does, with the same functions (:func:`score_body`,
:func:`ranked_answer`, :func:`after_answer`), and what the layers would do for such a request:
a ``RankError`` is answered by the app's own handler for it (the same body, the same error count),
``Connection: close`` is added if a drain began meanwhile, and the request is counted and timed by
:meth:`ServiceMetrics.record_request` after its bookkeeping, as the metrics middleware does.

Anything else goes to the whole app, unchanged: other requests at once; a body still arriving with
its first part replayed and the lane's deadline kept (``BODY_DEADLINE``), so the front door's 408
comes at the same time; any other exception before the answer starts by the whole app from the
start, with the body replayed, which answers and logs it as it always has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.dependencies import AppState, get_ranker
from service.errors import RankError
from service.fleet.drain import Drain, closing_when_draining
from service.front_door import BODY_DEADLINE, RequestHead
from service.json_body import check_content_type
from service.routers.rank import after_answer, is_rank_request, ranked_answer, score_body

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class RankLane:
    """Outermost ASGI layer answering ordinary ``POST /rank`` requests; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: AppState,
        drain: Drain,
        on_rank_error: ErrorHandler,
        endpoint: str = "/rank",
    ) -> None:
        self.app = app
        self.state = state
        self.drain = drain
        self.on_rank_error = on_rank_error
        self.endpoint = endpoint  # the route template metrics label it by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_rank_request(scope) or self.drain.draining:
            await self.app(scope, receive, send)
            return
        head = RequestHead(scope["headers"])
        settings = self.state.settings
        if not head.plain_body_within(settings.max_body_bytes):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + settings.body_timeout_seconds
        scope[BODY_DEADLINE] = deadline
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:  # the front door answers 408 at once: the deadline has passed
            await self.app(scope, receive, send)
            return
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, _replay(message, receive), send)
            return
        await self._rank(scope, message, receive, send, head, started)

    async def _rank(
        self,
        scope: Scope,
        message: Message,
        receive: Receive,
        send: Send,
        head: RequestHead,
        started: float,
    ) -> None:
        state = self.state
        metrics = state.metrics
        send = closing_when_draining(self.drain, send)
        try:
            ranker = await get_ranker(state)
            check_content_type(head.content_type)
            parsed, output = await score_body(state, ranker, message.get("body", b""))
            answer = ranked_answer(parsed, output)
        except RankError as error:
            response = await self.on_rank_error(Request(scope, receive), error)
            await response(scope, receive, send)
            metrics.record_request(
                self.endpoint, response.status_code, time.perf_counter() - started
            )
            return
        except Exception:  # not an answer the lane knows: the whole app answers (and logs) it
            await self.app(scope, _replay(message, receive), send)
            return
        await answer(scope, receive, send)
        answered = time.perf_counter()
        try:
            await after_answer(state, ranker, metrics, parsed, output)
        finally:
            metrics.record_request(self.endpoint, 200, answered - started, output.version)


def _replay(message: Message, receive: Receive) -> Receive:
    """A ``receive`` that yields ``message`` first, then the server's."""
    pending = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
