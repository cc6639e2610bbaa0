"""How often this host takes a core away from a running process, for the benchmarks' tables.

    python benchmarks/host_stalls.py [--seconds 3]

A process pinned to each core spins on ``time.perf_counter()`` for the same seconds, all at once,
and notes every gap between two reads longer than ``GAP_MS``: time the core ran something else (the
hypervisor, another guest's work on a shared host, a kernel thread, another process). A loop
iteration takes well under a microsecond, so on a host that leaves its cores alone there are none.

A tail latency is made of such gaps: a 2 ms request that loses 5 ms of its core, or waits behind one
that did, lands in the p99. ``serving_compare.py`` prints this beside its figures, so that a reader
can tell a host that stalls several times a second from a server that does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue

GAP_MS = 0.5
"""A gap between two reads of the clock longer than this is a stall (a loop iteration is ~0.1 us)."""


@dataclass(frozen=True)
class Stalls:
    """The gaps (ms) each core's loop saw in ``seconds``."""

    seconds: float
    per_core: list[list[float]]

    @property
    def per_second(self) -> float:
        """Stalls per second and per core."""
        cores = max(len(self.per_core), 1)
        return sum(map(len, self.per_core)) / (self.seconds * cores)

    @property
    def share(self) -> float:
        """The share of the cores' time lost to stalls."""
        cores = max(len(self.per_core), 1)
        return sum(map(sum, self.per_core)) / 1e3 / (self.seconds * cores)

    @property
    def largest_ms(self) -> float:
        return max((max(gaps) for gaps in self.per_core if gaps), default=0.0)

    @property
    def median_ms(self) -> float:
        every = [gap for gaps in self.per_core for gap in gaps]
        return statistics.median(every) if every else 0.0

    def describe(self) -> str:
        return (
            f"{self.per_second:.1f} a second per core longer than {GAP_MS} ms (median "
            f"{self.median_ms:.1f} ms, the largest {self.largest_ms:.1f} ms), "
            f"{self.share:.2%} of the time"
        )

    def as_json(self) -> dict[str, float]:
        return {
            "seconds": self.seconds,
            "cores": len(self.per_core),
            "per_second": self.per_second,
            "share": self.share,
            "median_ms": self.median_ms,
            "largest_ms": self.largest_ms,
        }


def _spin(core: int, seconds: float, start_at: float, out: Queue[list[float]]) -> None:
    """Pinned to ``core``: wait for the common start, spin ``seconds``, send the gaps."""
    os.sched_setaffinity(0, {core})
    while time.time() < start_at:  # every core's loop starts together
        time.sleep(0.001)
    clock = time.perf_counter
    limit = GAP_MS / 1e3
    gaps: list[float] = []
    last = clock()
    end = last + seconds
    while last < end:
        now = clock()
        if now - last > limit:
            gaps.append((now - last) * 1e3)
        last = now
    out.put(gaps)


def measure(seconds: float = 3.0) -> Stalls:
    """A loop on every core this process may use, all for the same ``seconds`` at once."""
    if not hasattr(os, "sched_setaffinity"):
        raise RuntimeError("measuring stalls needs os.sched_setaffinity (Linux)")
    cores = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    queue: Queue[list[float]] = context.Queue()
    start_at = time.time() + 1.0  # time for every process to start (spawn)
    processes = [
        context.Process(target=_spin, args=(core, seconds, start_at, queue)) for core in cores
    ]
    for process in processes:
        process.start()
    per_core = [queue.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join()
    return Stalls(seconds, per_core)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    stalls = measure(args.seconds)
    print(
        f"host stalls over {args.seconds:g} s on {len(stalls.per_core)} cores: {stalls.describe()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
