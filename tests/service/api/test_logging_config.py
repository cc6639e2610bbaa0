"""Logging is configured once: one handler, JSON lines with extra fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from service.logging_config import JsonFormatter, configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_configuring_twice_after_basic_config_leaves_one_stream_handler() -> None:
    logging.basicConfig()
    configure_logging("json")
    configure_logging("text")
    streams = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    ours = [h for h in streams if h.get_name() == "mtrank"]
    assert len(ours) == 1
    assert not [h for h in streams if type(h) is logging.StreamHandler and h not in ours]


def test_json_lines_carry_level_logger_message_and_extra_fields() -> None:
    record = logging.LogRecord(
        "service.x", logging.WARNING, __file__, 1, "slow %s", ("redis",), None
    )
    record.request_id = "r1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "service.x"
    assert entry["message"] == "slow redis"
    assert entry["request_id"] == "r1"
