"""Logging is configured once: one handler, JSON lines with extra fields."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from service.logging_config import JsonFormatter, configure_logging
from tests.fixtures.published_model import PublishedModel
from tests.fixtures.uvicorn_server import ROOT, free_port


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


def _log_lines(command: list[str], env: dict[str, str], port: int) -> list[str]:
    """Run a server until it is ready, send a /readyz, stop it; every line it wrote."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
        log.seek(0)
        return [line for line in log.read().decode().splitlines() if line.strip()]


def _json_env(published_store: PublishedModel) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTRANK_")}
    return env | {
        "MTRANK_MODELS_DIR": str(published_store.store_dir),
        "MTRANK_MODEL": published_store.model,
        "MTRANK_LOG_FORMAT": "json",
    }


@pytest.mark.slow
def test_uvicorn_own_lines_are_json_too(published_store: PublishedModel) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    entries = [json.loads(line) for line in _log_lines(command, _json_env(published_store), port)]
    messages = {(e["logger"], e["message"].split(" [")[0]) for e in entries}
    assert ("uvicorn.error", "Started server process") in messages
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert any(e["logger"] == "uvicorn.access" and "GET /readyz" in e["message"] for e in entries)
    assert all("color_message" not in e for e in entries)


@pytest.mark.slow
def test_serve_with_workers_writes_only_json_lines(published_store: PublishedModel) -> None:
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"]
    entries = [json.loads(line) for line in _log_lines(command, _json_env(published_store), port)]
    loggers = {e["logger"] for e in entries}
    assert {"service.cli.serve", "uvicorn.error", "service.main"} <= loggers
    assert any("Started parent process" in e["message"] for e in entries)
