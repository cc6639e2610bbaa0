"""The app's shutdown ends: the fleet controller's loops stop even when a Redis call swallows
their cancellation."""

from __future__ import annotations

import asyncio
import threading

from service.fleet.heartbeat import LocalBoard, ProcessStatus
from tests.service.api.conftest import MakeApp


class _SwallowingBoard(LocalBoard):
    """A board whose heartbeat hangs until cancelled, then reports the cancellation as an error,
    as a Redis client cancelled mid-command was seen to do."""

    def __init__(self) -> None:
        super().__init__()
        self.beats: list[ProcessStatus] = []
        self.beating = asyncio.Event()

    async def beat(self, status: ProcessStatus) -> None:
        self.beats.append(status)
        self.beating.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed while reading") from None


def test_stop_ends_a_heartbeat_loop_whose_cancellation_was_swallowed(make_app: MakeApp) -> None:
    app = make_app(fleet_heartbeat_seconds=0.05)

    async def serve_then_stop() -> tuple[list[bool], int]:
        board = _SwallowingBoard()
        async with app.router.lifespan_context(app):
            fleet = app.state.mtrank.fleet
            fleet.board = board
            await board.beating.wait()  # a beat is in flight when the app stops
            tasks = list(fleet._tasks)
        return [task.done() for task in tasks], len(board.beats)

    # before the fix the heartbeat beat on after its cancellation and stop() waited for ever,
    # deaf to cancellation itself: only a thread of its own bounds the wait
    results: list[tuple[list[bool], int]] = []
    thread = threading.Thread(
        target=lambda: results.append(asyncio.run(serve_then_stop())), daemon=True
    )
    thread.start()
    thread.join(timeout=60)
    assert results, "the app's shutdown did not finish within 60 s"
    done, beats = results[0]
    assert done == [True, True]  # reconcile and heartbeat ended, neither left behind
    assert beats == 1  # the loop did not beat again once stopped
