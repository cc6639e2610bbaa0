"""One structured log line per admin action: who, what, result.

``who`` is ``token:<first 8 hex of the sha256 of the bearer token>`` (never the token) and
``client`` the caller's address; ``action`` and the action's fields (version, percent...); ``result``
is ``ok``, ``refused`` (a 4xx: conflict, unknown version, bad preset) or ``failed`` (a 5xx or an
unexpected error). With ``MTRANK_LOG_FORMAT=json`` every field is a key of the line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request

from service.errors import RankError

logger = logging.getLogger("service.admin")


def who(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "anonymous"
    return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:8]


def client_address(request: Request) -> str:
    client = request.client
    return "unknown" if client is None else f"{client.host}:{client.port}"


@asynccontextmanager
async def audited(request: Request, action: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
    """Log the action once it ends; the body may add fields (e.g. ``recorded_in``) to the dict."""
    note: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    entry = {"event": "admin_action", "who": who(request), "client": client_address(request)}
    try:
        yield note
    except RankError as exc:
        result = "refused" if exc.status_code < 500 else "failed"
        _log(
            logging.WARNING, entry, action, result, {**note, "error": exc.code, "why": exc.message}
        )
        raise
    except Exception as exc:
        _log(logging.ERROR, entry, action, "failed", {**note, "error": type(exc).__name__})
        raise
    _log(logging.INFO, entry, action, "ok", note)


def _log(level: int, entry: dict[str, str], action: str, result: str, note: dict[str, Any]) -> None:
    details = ", ".join(f"{k}={v}" for k, v in note.items() if k != "why")
    why = f": {note['why']}" if "why" in note else ""
    logger.log(
        level,
        "admin %s by %s from %s: %s%s%s",
        action,
        entry["who"],
        entry["client"],
        result,
        f" ({details})" if details else "",
        why,
        extra={**entry, "action": action, "result": result, **note},
    )
