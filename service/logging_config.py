"""Logging configured once per process: JSON lines in production, plain text for humans.

Modules only do ``logger = logging.getLogger(__name__)``; :func:`configure_logging` (called by the app
factory and the ``serve`` command) installs one handler on the root logger and is idempotent. uvicorn's
own loggers (server and access lines) are routed through that handler too, so with ``json`` every line
a process writes is JSON, whether it was started by ``uvicorn --factory`` or ``python -m service serve``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

_HANDLER_NAME = "mtrank"
# LogRecord attributes that are not user-supplied ``extra=`` fields.
# uvicorn adds ``color_message`` (the message with ANSI colours) to its records: not a field for JSON.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# uvicorn's CLI gives these loggers handlers of their own (plain text) that do not propagate.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ``extra`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    fmt: Literal["json", "text"] = "json",
    level: str = "INFO",
) -> None:
    """Install (or replace) the service's root handler; calling it again changes nothing else."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # ours from an earlier call, and plain stderr/stdout handlers (``logging.basicConfig``, e.g. the
        # CLI's) so that every line is written once; other handlers (pytest's capture) are kept
        if handler.get_name() == _HANDLER_NAME or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        # uvicorn's own text handlers go; a logger it left without any is switched off on purpose
        # (``--no-access-log``) and stays so
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
