"""A circuit breaker that stops calling a dead dependency for a cool-down.

Closed: calls go through; K consecutive failures open it. Open: calls are refused until the
cool-down has passed, then it is half-open and lets one probe through. The probe's success closes
it; its failure opens it again for another cool-down. A probe that never reports (cancelled) is
replaced by a new one after another cool-down, so the breaker cannot stick half-open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure breaker; ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if cooldown_seconds <= 0:
            raise ValueError(f"cooldown_seconds must be > 0, got {cooldown_seconds}")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._since = 0.0  # when the breaker opened, or when the current probe started

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """True when a call may go through now (in half-open state: one probe per cool-down)."""
        if self._state == "closed":
            return True
        now = self._clock()
        if now - self._since < self.cooldown_seconds:
            return False
        self._state = "half_open"
        self._since = now
        return True

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0

    def record_failure(self) -> None:
        """Count a failure; opens the breaker at the threshold, or at once after a failed probe."""
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._state = "open"
            self._since = self._clock()
