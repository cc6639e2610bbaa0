# ruff: noqa: N818  (names are HTTP outcomes shared with the scoring engine: InvalidInput, NotReady, ...)
"""The service's error hierarchy and the one place that maps errors to HTTP responses.

Domain code (scoring, store, registry) raises a :class:`RankError` subclass and never ``HTTPException``.
Every error reaches the client as ``{"error": {"code": "...", "message": "...", "field": "..."}}`` where
``field`` is a dotted path into the request (``candidates[2].id``, ``context.hour``) or ``null``.
Bad input is always a 4xx: validation errors, undecodable JSON and oversized bodies have their own
codes, and only a genuine bug ends as a 500 ``internal``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger(__name__)

ErrorObserver = Callable[[str], None]
"""Called with the error code of every error response (the metrics layer counts them by reason)."""


class RankError(Exception):
    """Base of every error the service answers with a 4xx/5xx JSON body."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}


class InvalidInput(RankError):
    """The request is well-formed JSON but a value is wrong (type, range, missing, inconsistent)."""

    status_code = 422
    code = "invalid_input"


class MalformedBody(RankError):
    """The body is not JSON, or not sent as ``application/json``."""

    status_code = 400
    code = "malformed_body"


class UnsupportedMediaType(RankError):
    """The request declares a content type other than JSON."""

    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(RankError):
    """The body is larger than ``max_body_bytes``."""

    status_code = 413
    code = "payload_too_large"


class RequestTimeout(RankError):
    """The body did not arrive within ``body_timeout_seconds``."""

    status_code = 408
    code = "request_timeout"


class NotReady(RankError):
    """No model is loaded (yet): the service is alive but cannot rank."""

    status_code = 503
    code = "not_ready"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class Overloaded(RankError):
    """More requests are in flight than ``max_concurrency``: retry shortly, preferably elsewhere."""

    status_code = 503
    code = "overloaded"

    def __init__(
        self, message: str, *, field: str | None = None, retry_after_seconds: int = 1
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ModelLoadError(RankError):
    """Loading, validating or warming a model version failed; the previous version keeps serving."""

    status_code = 409
    code = "model_load_failed"


class Unauthorized(RankError):
    """Missing or wrong bearer token on an admin endpoint."""

    status_code = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(RankError):
    """The admin API is disabled because no admin token is configured."""

    status_code = 403
    code = "admin_disabled"


class NotFound(RankError):
    """The path or the named resource (model version, preset) does not exist."""

    status_code = 404
    code = "not_found"


class BadRequest(RankError):
    """Any other client error the framework detects."""

    status_code = 400
    code = "bad_request"


class MethodNotAllowed(RankError):
    status_code = 405
    code = "method_not_allowed"


def error_codes() -> list[str]:
    """Every error code the service can answer with (``RankError`` and all its subclasses)."""
    codes: set[str] = set()
    pending: list[type[RankError]] = [RankError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return sorted(codes)


def field_path(loc: Sequence[int | str]) -> str | None:
    """Turn a pydantic ``loc`` into ``candidates[2].id`` style; ``None`` for the body as a whole."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (part.startswith("<") and part.endswith(">")) or "[" in part:
            continue  # union tags (``<float>``) and pydantic's branch labels, not request fields
        else:
            out += f".{part}" if out else part
    return out or None


def _first_error(errors: Sequence[Any]) -> tuple[str, str | None, str]:
    """(message, field, pydantic type) of the most useful error of a validation failure."""
    if not errors:
        return "invalid request", None, "value_error"
    error = errors[0]  # pydantic reports in document order: the first bad field
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid value"))
    kind = str(error.get("type", "value_error"))
    return message, field_path(loc), kind


# Clearer words for the pydantic errors clients meet most.
_MESSAGES = {
    "finite_number": "NaN, Infinity and numbers beyond the float range (e.g. 1e309) are refused: "
    "send a finite number",
    "extra_forbidden": "unknown field: remove it (see the OpenAPI schema at /docs)",
    "missing": "required field is missing",
}


def from_validation_errors(errors: Sequence[Any]) -> RankError:
    """Map pydantic/FastAPI validation errors to :class:`InvalidInput` or :class:`MalformedBody`."""
    message, field, kind = _first_error(errors)
    if kind in {"json_invalid", "json_type"}:
        return MalformedBody(f"request body is not valid JSON: {message}", field=field)
    return InvalidInput(_MESSAGES.get(kind, message), field=field)


def error_response(error: RankError, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON answer to ``error``; ``headers`` are added to the error's own (e.g. ``Allow``)."""
    body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
    return Response(
        content=orjson.dumps(body),
        status_code=error.status_code,
        media_type="application/json",
        headers={**error.headers(), **(headers or {})},
    )


_STATUS_ERRORS: dict[int, type[RankError]] = {
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def install_error_handlers(
    app: FastAPI, observe: ErrorObserver | None = None
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Register the one mapping from exceptions to ``{"error": ...}`` responses on ``app``; returns
    the handler of ``RankError`` (for ``service.rank_lane``, which answers before the app's layers)."""

    def respond(error: RankError, headers: Mapping[str, str] | None = None) -> Response:
        if observe is not None:
            observe(error.code)
        return error_response(error, headers)

    async def on_rank_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, RankError):  # pragma: no cover - registration guarantees the type
            raise exc
        if exc.status_code >= 500 and not isinstance(exc, NotReady | Overloaded):
            logger.error("request failed: %s", exc.message)
        return respond(exc)

    async def on_request_validation(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError | ValidationError):  # pragma: no cover
            raise exc
        return respond(from_validation_errors(exc.errors()))

    async def on_http_exception(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
            raise exc
        default = BadRequest if exc.status_code < 500 else RankError
        cls = _STATUS_ERRORS.get(exc.status_code, default)
        return respond(cls(str(exc.detail)), exc.headers)  # e.g. a 405's ``Allow``

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        logger.exception("unhandled error while serving a request")
        return respond(RankError(f"internal error ({type(exc).__name__}); see the service log"))

    app.add_exception_handler(RankError, on_rank_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unexpected)
    return on_rank_error
