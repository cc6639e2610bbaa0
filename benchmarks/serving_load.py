"""HTTP load for the serving comparison: raw keep-alive sockets, one pre-built request, no client library.

    python benchmarks/serving_load.py --port 8000 --body body.json --mode closed --concurrency 4 \
        --seconds 5 [--path /rank] [--cpu 1]
    python benchmarks/serving_load.py --port 8000 --body body.json --mode open --rate 200 --seconds 5
    python benchmarks/serving_load.py --port 8000 --body list.json --alternate columnar.json

``--alternate``: a second body; each connection sends the two in turn, and the second's latencies are
reported apart (``alternate_latencies_ms``), so two forms of a request are compared over the same
seconds of the same server, whatever the host's speed does meanwhile.

``closed``: ``--concurrency`` connections, each sends its next request when the last answer is in.
``open``: requests start on a fixed schedule (``--rate`` per second) whether or not earlier ones are
done, on as many connections as needed (``--connections`` are open before the start, more are opened
when every one is busy); latency counts from the scheduled start, so queueing at the server is
included (no coordinated omission). ``--reuse`` picks the idle connection a request takes: ``mru``
(the default), the one whose answer came last, as a client's keep-alive pool does (urllib3, Go's
``http.Transport``, nginx's upstream keep-alive), so at a modest rate one connection carries most
requests; ``lru``, the one idle longest, so requests go in turn over every open connection, as
wrk2's fixed connections do. Against ``serve --workers N``, whose kernel puts each connection on one
worker, that decides how the load divides over the workers. Prints one JSON line: latencies (ms), throughput,
status counts and the CPU seconds of this process's load loop (start-up excluded), so the load
generator's cost is reported apart from the server's. ``--cpu`` pins the generator to one core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STALE_SECONDS = 4.0
"""Open loop: an idle connection is closed and replaced after this long, before the server's
keep-alive (``MTRANK_KEEP_ALIVE_SECONDS``, 5 by default) closes it under the client's feet."""


READ_SPACE = 1 << 17
"""Free bytes kept ahead of each read. The answer is read into one buffer that lives as long as the
connection; a ``recv`` of its own would allocate a fresh object per read, and one of 128 KiB or
more comes from ``mmap``: the kernel maps and zeroes new pages for every answer (32 page faults per
500-candidate answer, 80 us of the client's CPU), which every system's latency would carry."""


class Connection:
    """One keep-alive HTTP/1.1 connection that sends fixed requests in turn and reads whole answers.

    The socket stays blocking: a request is sent whole with ``sendall``, and an answer is read only
    when the selector reports the socket readable, so a read never waits. The answer is received
    into a buffer kept for the connection (grown when an answer needs more, never shrunk), its head
    parsed once it is complete, and after that only the received byte count is compared with
    ``Content-Length``: a large answer arriving in several chunks costs the client no re-parsing,
    no copy beyond the kernel's and no allocation (what it adds to the measured time is the wake-up
    and the copy out of the socket)."""

    def __init__(self, port: int, requests: Sequence[bytes]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = requests
        self.sent = 0
        self.kind = 0  # which of ``requests`` is in flight
        self.buffer = bytearray(2 * READ_SPACE)
        self.view = memoryview(self.buffer)
        self.received = 0  # bytes of the answer in flight so far
        self.started = 0.0
        self.status = 0
        self.expected = -1  # head + body bytes once the head is parsed
        self.idle_since = time.perf_counter()

    def send(self, started: float) -> None:
        self.started = started
        self.received = 0
        self.expected = -1
        self.kind = self.sent % len(self.requests)
        self.sent += 1
        self.sock.sendall(self.requests[self.kind])

    def read(self) -> int | None:
        """The status once the whole answer is in, else None (call again when readable)."""
        if len(self.buffer) - self.received < READ_SPACE:
            self._grow()
        count = self.sock.recv_into(self.view[self.received :])
        if not count:
            raise ConnectionError("server closed the connection")
        self.received += count
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n", 0, self.received)
            if end < 0:
                return None
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.status = int(head.split(b" ", 2)[1])
            self.expected = end + 4 + length
        if self.received < self.expected:
            return None
        if self.received > self.expected:
            raise ConnectionError(
                f"{self.received - self.expected} bytes past the answer: the server sent more "
                "than its Content-Length, or answered a request twice"
            )
        return self.status

    def _grow(self) -> None:
        """Double the buffer, keeping what was received (the view must go before a resize)."""
        self.view.release()
        self.buffer.extend(bytes(len(self.buffer)))
        self.view = memoryview(self.buffer)


def build_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _take(idle: list[Connection], lru: bool) -> Connection | None:
    """The idle connection the next request takes (None when every one is busy): the longest
    idle (``lru``) or the one whose answer came last (``idle`` is in the order answers came)."""
    if not idle:
        return None
    return idle.pop(0) if lru else idle.pop()


def run_load(args: argparse.Namespace, requests: Sequence[bytes]) -> dict[str, Any]:
    selector = selectors.DefaultSelector()
    closed = args.mode == "closed"
    opened = args.concurrency if closed else args.connections
    idle = [Connection(args.port, requests) for _ in range(opened)]
    lru = args.reuse == "lru"  # open loop: the next request takes the longest idle connection
    latencies: list[list[float]] = [[] for _ in requests]  # per request kind
    statuses: Counter[int] = Counter()
    before = resource.getrusage(resource.RUSAGE_SELF)  # the loop's CPU, not the start-up's
    begin = time.perf_counter()
    stop = begin + args.seconds
    next_start = begin  # open loop: the next scheduled start
    in_flight = 0

    def start(conn: Connection, at: float) -> None:
        nonlocal in_flight
        conn.send(at)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        in_flight += 1

    while True:
        now = time.perf_counter()
        if closed:
            while idle and now < stop:
                start(idle.pop(), now)
        else:
            while idle and now - idle[0].idle_since > STALE_SECONDS:  # the longest idle first
                idle.pop(0).sock.close()
            while next_start <= now and next_start < stop:
                start(_take(idle, lru) or Connection(args.port, requests), next_start)
                next_start += 1.0 / args.rate
        if in_flight == 0:
            if now >= stop:
                break
            time.sleep(max(0.0, min(next_start - now, 0.001)))
            continue
        wait = 0.001 if closed else max(0.0, min(next_start - now, 0.001))
        for key, _ in selector.select(timeout=wait):
            conn: Connection = key.data
            status = conn.read()
            if status is None:
                continue
            statuses[status] += 1
            if status == 200:
                latencies[conn.kind].append((time.perf_counter() - conn.started) * 1e3)
            selector.unregister(conn.sock)
            in_flight -= 1
            conn.idle_since = time.perf_counter()
            idle.append(conn)
    elapsed = time.perf_counter() - begin
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for conn in idle:  # every connection is idle once the last answer is in
        conn.sock.close()
    selector.close()
    result: dict[str, Any] = {
        "latencies_ms": latencies[0],
        "throughput": sum(map(len, latencies)) / elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": elapsed,
        "generator_cpu_seconds": usage.ru_utime
        + usage.ru_stime
        - before.ru_utime
        - before.ru_stime,
    }
    if len(latencies) > 1:
        result["alternate_latencies_ms"] = latencies[1]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True, help="request body file")
    parser.add_argument("--alternate", type=Path, help="a second body, sent in turn with --body")
    parser.add_argument("--path", default="/rank")
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0, help="open loop: requests/s")
    parser.add_argument(
        "--connections", type=int, default=1, help="open loop: connections opened before the start"
    )
    parser.add_argument(
        "--reuse",
        choices=("mru", "lru"),
        default="mru",
        help="open loop: the idle connection a request takes, the most recently used (a client "
        "pool's usual choice) or the least (requests in turn over every open connection)",
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    bodies = [args.body] + ([args.alternate] if args.alternate else [])
    requests = [build_request(args.path, body.read_bytes()) for body in bodies]
    print(json.dumps(run_load(args, requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
