"""The discipline every Redis call on the request path follows.

redis-py's defaults (5 s socket timeouts, retries with backoff) suit batch jobs, not a ranking
request with a budget of a few milliseconds. ``make_client`` sets connect and socket timeouts in
milliseconds and at most one retry; ``RedisGuard.run`` adds an overall time budget, a circuit
breaker, classifies failures into a status and logs them rate-limited. It never raises (except
cancellation of the calling task, which must propagate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.store.circuit_breaker import CircuitBreaker
from service.store.redis_url import cluster_target

T = TypeVar("T")
GuardStatus = Literal["ok", "timeout", "error", "circuit_open"]
AsyncRedis = aioredis.Redis | aioredis.RedisCluster


def make_client(url: str, *, timeout_ms: float) -> AsyncRedis:
    """An asyncio client with connect/socket timeouts of ``timeout_ms`` and at most one retry;
    redis-py's cluster client for a ``redis+cluster://`` URL (``service.store.redis_url``)."""
    if timeout_ms <= 0:
        raise ValueError(f"Redis timeout must be > 0 ms, got {timeout_ms}")
    seconds = timeout_ms / 1000.0
    target = cluster_target(url)
    if target is not None:
        return aioredis.RedisCluster.from_url(
            target,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            retry=Retry(NoBackoff(), 1),
            cluster_error_retry_attempts=1,
            health_check_interval=0,
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


async def discover_cluster(client: AsyncRedis, *, seconds: float, logger: logging.Logger) -> bool:
    """Learn a cluster's slot map now rather than on the first request, whose millisecond budget
    it would spend (a no-op for a single server); never raises: a cluster that is down is
    discovered later, on a request that then reports an error."""
    if not isinstance(client, aioredis.RedisCluster):
        return True
    try:
        async with asyncio.timeout(seconds):
            await client.initialize()
    except Exception as exc:
        logger.warning(
            "Redis Cluster slot discovery failed (%s: %s); requests retry it and rank without "
            "stored features until it succeeds",
            type(exc).__name__,
            exc,
        )
        return False
    return True


def describe_url(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{db}"


class ThrottledLog:
    """At most one log line per ``interval_seconds`` for each kind; says how many were skipped."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> bool:
        """Log ``message`` under ``kind`` unless one was logged recently; True when logged."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        skipped = self._skipped.pop(kind, 0)
        suffix = f" ({skipped} similar events not logged in the last {self._interval:g} s)"
        self._logger.warning("%s%s", message, suffix if skipped else "")
        self._last[kind] = now
        return True


class RedisGuard:
    """Runs one Redis call under a time budget and a circuit breaker; failures become a status."""

    def __init__(
        self,
        *,
        what: str,
        url: str,
        breaker: CircuitBreaker,
        budget_ms: float,
        log: ThrottledLog,
        fallback: str,
    ) -> None:
        if budget_ms <= 0:
            raise ValueError(f"time budget must be > 0 ms, got {budget_ms}")
        self.breaker = breaker
        self._what = what  # e.g. "Redis feature store"
        self._where = describe_url(url)
        self._budget = budget_ms / 1000.0
        self._log = log
        self._fallback = fallback  # what the service does instead, for log lines

    async def run(self, call: Callable[[], Awaitable[T]]) -> tuple[T | None, GuardStatus]:
        """Await ``call()`` if the breaker allows it; never raises an exception from the call."""
        if not self.breaker.allow():
            self._log.warning(
                "circuit_open",
                f"{self._what} at {self._where}: circuit open after "
                f"{self.breaker.failure_threshold} consecutive failures, not calling Redis for "
                f"{self.breaker.cooldown_seconds:g} s; {self._fallback}. It probes Redis again "
                "on its own; check that Redis is up and reachable.",
            )
            return None, "circuit_open"
        try:
            async with asyncio.timeout(self._budget):
                result = await call()
        except (TimeoutError, RedisTimeoutError) as exc:
            self.breaker.record_failure()
            self._log.warning(
                "timeout",
                f"{self._what} at {self._where}: no answer within {self._budget * 1000:g} ms "
                f"({type(exc).__name__}); {self._fallback}. Check Redis load and network "
                "latency, or raise MTRANK_FEATURE_BUDGET_MS / MTRANK_REDIS_TIMEOUT_MS.",
            )
            return None, "timeout"
        except ResponseError as exc:  # Redis answered: it is alive, the breaker stays closed
            self.breaker.record_success()
            self._log.warning(
                "response_error",
                f"{self._what} at {self._where}: Redis refused the command ({exc}); "
                f"{self._fallback}. Check that the keys under this prefix hold mtrank values.",
            )
            return None, "error"
        except (RedisError, OSError) as exc:
            self.breaker.record_failure()
            self._log.warning(
                "error",
                f"{self._what} at {self._where}: {type(exc).__name__}: {exc}; {self._fallback}. "
                "Check that Redis is running and MTRANK_REDIS_URL is right; the client "
                "reconnects on its own once Redis answers.",
            )
            return None, "error"
        except Exception as exc:  # never let a client bug fail a ranking request
            self.breaker.record_failure()
            self._log.warning(
                "unexpected",
                f"{self._what} at {self._where}: unexpected {type(exc).__name__}: {exc}; "
                f"{self._fallback}. Please report this with the log line.",
            )
            return None, "error"
        self.breaker.record_success()
        return result, "ok"


def connect_guarded(
    url: str,
    *,
    what: str,
    fallback: str,
    logger: logging.Logger,
    timeout_ms: float,
    budget_ms: float,
    breaker: CircuitBreaker | None = None,
    log_interval_seconds: float = 10.0,
) -> tuple[AsyncRedis, RedisGuard]:
    """A millisecond-budget client and the guard its calls run under (connects lazily: a Redis
    that is down at start-up only makes calls report errors)."""
    guard = RedisGuard(
        what=what,
        url=url,
        breaker=breaker or CircuitBreaker(),
        budget_ms=budget_ms,
        log=ThrottledLog(logger, interval_seconds=log_interval_seconds),
        fallback=fallback,
    )
    return make_client(url, timeout_ms=timeout_ms), guard
