"""The front door: what every HTTP request goes through before routing.

(Except an ordinary ``POST /rank``, whose plain body in one piece needs none of it but the deadline:
``service.rank_lane`` answers it in front of the middleware chain, and hands any other /rank here
with the deadline it started, ``BODY_DEADLINE``.)

In order, for each request:

1. a path under ``/admin`` must carry the admin token (:mod:`service.admin_auth`): 401/403 before any
   byte of the body is read;
2. a body (POST, PUT, PATCH) with an unsupported ``Content-Encoding`` gets 415, one whose
   ``Content-Length`` exceeds the route's limit gets 413, both before it is read (a client that sent
   ``Expect: 100-continue`` is answered before it sends the body);
3. the body is read in full, decoded (gzip) and counted against the limit in decoded bytes, within
   ``body_timeout_seconds`` (408 past it); only then does the app see the request, so a slow client
   holds no ``/rank`` concurrency slot while its body trickles in;
4. a client that disconnects before its body is complete raises ``ClientDisconnect``, which the
   metrics middleware records as status 499.

A refused body that is still arriving is drained (discarded, up to ``DRAIN_FACTOR`` times the limit,
within the same deadline) before the answer, so an ordinary client that sends the whole body before
reading (urllib, requests) sees the 413 instead of a reset connection; refusals close the connection.
What is left to a proxy in front (slow request heads, connections per client) is in ``docs/deployment.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.admin_auth import admin_refusal, bearer_credentials, is_admin_path
from service.errors import (
    ErrorObserver,
    PayloadTooLarge,
    RankError,
    RequestTimeout,
    error_response,
)
from service.request_body import body_decoder, drain, receive_body
from service.settings import Settings

logger = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
BODY_DEADLINE = "mtrank.body_deadline"
"""Scope key: the event loop time by which the body must be in, when a layer before the front door
(``service.rank_lane``) already started waiting for it; the front door keeps that deadline."""
DRAIN_FACTOR = 4
"""A refused body is discarded up to this many times the route's limit so the client can read the
answer; a larger one is cut (the client may then see a reset: send ``Expect: 100-continue``)."""


class FrontDoor:
    """ASGI middleware applying the admin check, body limits, decoding and the body deadline."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        routes: Iterable[BaseRoute],
        observe: ErrorObserver | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.routes = routes  # the app's (growing) route list: names refused requests in metrics
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = RequestHead(scope["headers"])
        admin = is_admin_path(scope["path"])
        if admin:
            refusal = admin_refusal(
                self.settings.admin_token, bearer_credentials(head.authorization)
            )
            if refusal is not None:
                await self._refuse(scope, receive, send, refusal, head, self._limit(admin))
                return
        if scope["method"] not in BODY_METHODS or not head.has_body:
            await self.app(scope, receive, send)
            return
        limit = self._limit(admin)
        deadline = scope.get(BODY_DEADLINE)  # set by the rank lane when it started receiving
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.settings.body_timeout_seconds
        try:
            decoder = body_decoder(head.encoding, limit, self._limit_name(admin))
            if head.length is not None and head.length > limit:
                raise PayloadTooLarge(
                    f"request body of {head.length} bytes exceeds {limit} bytes "
                    f"({self._limit_name(admin)}): send a smaller body, e.g. fewer candidates"
                )
            async with asyncio.timeout_at(deadline):
                body = await receive_body(receive, decoder)
        except RankError as error:
            await self._refuse(scope, receive, send, error, head, limit, deadline)
            return
        except ClientDisconnect:
            self._name_route(scope)  # counted as a 499 of this route by the metrics middleware
            raise
        except TimeoutError:
            timeout = RequestTimeout(
                f"request body not received within {self.settings.body_timeout_seconds:g} s "
                "(MTRANK_BODY_TIMEOUT_SECONDS): send the whole body at once"
            )
            await self._refuse(scope, receive, send, timeout, head, limit, deadline)
            return
        if head.encoding is not None:
            scope = {**scope, "headers": _decoded_headers(scope["headers"], len(body))}
        await self.app(scope, _replay(body, receive), send)

    def _limit(self, admin: bool) -> int:
        return self.settings.max_admin_body_bytes if admin else self.settings.max_body_bytes

    @staticmethod
    def _limit_name(admin: bool) -> str:
        return "MTRANK_MAX_ADMIN_BODY_BYTES" if admin else "MTRANK_MAX_BODY_BYTES"

    def _name_route(self, scope: Scope) -> None:
        """Put the route in ``scope`` as the router would: metrics label the request by its
        template rather than as "unmatched"."""
        route = _matching_route(self.routes, scope)
        if route is not None:
            scope["route"] = route

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: RankError,
        head: RequestHead,
        limit: int,
        deadline: float | None = None,
    ) -> None:
        """Answer ``error`` without passing the request on, after draining what the client still
        sends (unless it waits for ``100 Continue``, or the deadline has passed), and close."""
        cap = DRAIN_FACTOR * limit
        if head.has_body and not head.expects_continue and (head.length or 0) <= cap:
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.settings.body_timeout_seconds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await drain(receive, cap)
        self._name_route(scope)
        logger.debug("refused %s %s: %s", scope["method"], scope["path"], error.message)
        if self.observe is not None:
            self.observe(error.code)
        await error_response(error, {"Connection": "close"})(scope, receive, send)


class RequestHead:
    """The request headers the front door (and ``service.rank_lane``) need, read in one pass."""

    __slots__ = (
        "authorization",
        "chunked",
        "content_type",
        "encoding",
        "expects_continue",
        "has_body",
        "length",
    )

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.authorization: str | None = None
        self.content_type: str | None = None
        self.encoding: str | None = None
        self.expects_continue = False
        self.length: int | None = None
        self.chunked = False
        for name, value in headers:
            if name == b"content-length":
                self.length = int(value) if value.isdigit() else None
            elif name == b"content-type" and self.content_type is None:  # the first, as Starlette
                self.content_type = value.decode("latin-1")
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"content-encoding":
                self.encoding = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"expect":
                self.expects_continue = value.lower() == b"100-continue"
        if self.encoding is not None and self.encoding.strip().lower() == "identity":
            self.encoding = None
        self.has_body = self.chunked or bool(self.length)

    def plain_body_within(self, limit: int) -> bool:
        """A body of declared length within ``limit``: not chunked, not compressed, and the client
        not waiting for ``100 Continue`` (a body the front door only has to receive)."""
        return (
            self.length is not None
            and 0 < self.length <= limit
            and not self.chunked
            and self.encoding is None
            and not self.expects_continue
        )


def _decoded_headers(
    headers: Iterable[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    """The headers the app sees for a decoded body: no Content-Encoding, the decoded length."""
    kept = [(n, v) for n, v in headers if n not in (b"content-encoding", b"content-length")]
    return [*kept, (b"content-length", str(length).encode())]


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then waits on the server's (for
    ``http.disconnect``)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _matching_route(routes: Iterable[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route the router would pick for ``scope`` (``None`` if none), for the metrics label."""
    partial: BaseRoute | None = None
    for route in _flat_routes(routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """``routes`` with FastAPI's included routers (kept whole since FastAPI 0.16x) replaced by
    their routes."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield route
        else:
            for context in contexts():
                yield context.original_route
