"""The SIGTERM drain's bound: a process whose shutdown never finishes still exits."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from types import FrameType

import pytest

from service.fleet.drain import Drain
from tests.fixtures.uvicorn_server import ROOT


def test_a_process_still_running_after_drain_and_grace_exits_with_status_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forwarded: list[int] = []
    exits: list[int] = []
    exited = threading.Event()

    def server_handler(sig: int, frame: FrameType | None) -> None:  # uvicorn's, which sets flags
        forwarded.append(sig)

    def exit_process(code: int) -> None:
        exits.append(code)
        exited.set()

    drain = Drain(0.05, 0.05, hard_exit_seconds=0.1, exit_process=exit_process)
    previous = signal.signal(signal.SIGTERM, server_handler)

    async def terminated_and_stuck() -> None:
        assert drain.install()
        try:
            signal.raise_signal(signal.SIGTERM)
            assert drain.is_draining()
            await asyncio.sleep(0.5)  # the drain and the grace run out; the app never finishes
        finally:
            drain.uninstall()

    try:
        with caplog.at_level(logging.WARNING, logger="service.fleet.drain"):
            asyncio.run(terminated_and_stuck())
            assert exited.wait(timeout=10), "the watchdog never ended the process"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert forwarded == [signal.SIGTERM, signal.SIGINT]  # the server's stop, then its forced exit
    assert exits == [1]
    assert "exiting now with status 1" in caplog.text


def test_the_watchdog_never_keeps_a_process_that_exits_on_its_own_alive() -> None:
    """SIGTERM arms a 60 s watchdog; the process finishes its shutdown at once and must exit at
    once, not when the watchdog would have fired."""
    program = textwrap.dedent(
        """
        import asyncio, signal
        from service.fleet.drain import Drain

        signal.signal(signal.SIGTERM, lambda sig, frame: None)  # the server's handler
        drain = Drain(0.0, 30.0, hard_exit_seconds=30.0)

        async def main():
            drain.install()
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            drain.uninstall()

        asyncio.run(main())
        print("shut down")
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "shut down"
    assert time.monotonic() - started < 30  # well before the watchdog's 60 s
