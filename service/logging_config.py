"""Logging configured once per process: JSON lines in production, plain text for humans.

Modules only do ``logger = logging.getLogger(__name__)``; :func:`configure_logging` (called by the app
factory and the ``serve`` command) installs one handler on the root logger and is idempotent.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

_HANDLER_NAME = "mtrank"
# LogRecord attributes that are not user-supplied ``extra=`` fields.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


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
