"""``--workers N``: the supervisor accepts every connection and hands it to the worker holding fewest.

uvicorn's supervisor binds one socket and every worker accepts from it. A worker woken by a new
connection accepts every connection already queued, so of connections opened together (a load
balancer's upstream pool, a client's keep-alive pool, a load test) the worker that woke first takes
most: of 8 connections opened at once to ``serve --workers 2``, one worker took 6 or 7 in every
trial. One socket per worker with ``SO_REUSEPORT`` (mtrank's way until then) lets the kernel pick a
worker by a hash of each connection's addresses: 8 connections split 4/4 only 27 % of the time, and
6/2 or worse 29 %. On a keep-alive connection every request goes to the worker that accepted it, so
a worker holding 6 of 8 takes 75 % of the load: with 8 connections taken in turn at 83 % of the
2 workers' saturation (default model, 500 candidates), requests took 5.0-5.7 ms at the median with
6/2 against 2.3 ms with 4/4.

Here the supervisor holds the only listening socket. :class:`Balancer`, a thread of the supervisor,
accepts each connection and passes its descriptor over a Unix socket pair (the channel) to the
ready worker holding the fewest connections, ties taken in turn; the connection is then the
worker's alone, and the supervisor touches none of its bytes. Each worker
(:mod:`service.fleet.handoff`) says on its channel when it is ready and when a connection closes, so
the counts follow connections that end as well as those that start (Envoy's ``exact_balance`` does
the same between its threads). Until a worker is ready, new connections wait in the kernel's
backlog, as they did for a worker still loading its model.

:class:`BalancedSupervisor` is uvicorn's supervisor with a channel for each worker: a worker that
dies is replaced on a new channel; ``SIGHUP`` replaces each worker in turn, the old one taking no
new connection once its successor is ready; ``SIGTTIN``/``SIGTTOU`` add or retire a worker.

:func:`balance_supported` says whether this applies (descriptor passing, a TCP address, and
uvicorn's supervisor of the shape this subclass expects); where it does not, ``serve`` runs
uvicorn's own supervisor on one shared socket.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.fleet.handoff import CLOSED, CONNECTION, READY, HandoffProcess

logger = logging.getLogger("uvicorn.error")

ACCEPTS_PER_WAKE = 64
"""Connections accepted before the balancer reads its workers' reports again."""
PAUSE_SECONDS = 0.1
"""After an accept failed for want of descriptors or memory: wait before accepting again."""
WARN_EVERY_SECONDS = 10.0
"""While accepts keep failing so, one warning in this long (a pause comes every PAUSE_SECONDS)."""
REPORT_BYTES = 4096


def balance_supported(config: Config) -> str | None:
    """None when :class:`BalancedSupervisor` can serve ``config``, else why not."""
    if not hasattr(socket, "send_fds"):
        return "this platform cannot pass a connection to another process"
    if config.uds is not None or config.fd is not None:
        return "the server listens on a unix socket or an inherited descriptor"
    if list(inspect.signature(Process).parameters) != ["config", "sockets"]:
        return "this uvicorn's supervisor differs from the one mtrank extends"
    return None


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``(host, port)``, non-blocking (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    channel: socket.socket
    ready: bool = False
    holding: int = 0  # connections handed over and not reported closed


class Balancer:
    """Accepts on ``listener`` (in a thread of its own once started) and hands each connection to
    the ready worker holding the fewest. :meth:`attach` and :meth:`detach` may be called from any
    thread; the thread alone touches the sockets."""

    def __init__(
        self, listener: socket.socket, on_failure: Callable[[], None] = lambda: None
    ) -> None:
        listener.setblocking(False)
        self.on_failure = on_failure
        self.listener = listener
        self._workers: dict[int, _Worker] = {}
        self._keys = itertools.count()
        self._turn = 0
        self._changes: list[tuple[int, socket.socket | None]] = []
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)  # a full pipe means a wake is pending: never block
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._waiting: deque[socket.socket] = deque()  # accepted, no channel took them yet
        self._accepting = False
        self._paused_until = 0.0
        self._warned_at = -WARN_EVERY_SECONDS
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mtrank-balancer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every channel (their workers serve the
        connections they hold, and take no more)."""
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join()
        for worker in self._workers.values():
            worker.channel.close()
        for conn in self._waiting:
            conn.close()
        self._workers.clear()
        self._waiting.clear()
        self._selector.close()
        self.listener.close()
        self._wake_read.close()
        self._wake_write.close()

    def attach(self) -> tuple[int, socket.socket]:
        """A new worker's key and its end of the channel (give it to the worker, then close it)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        key = next(self._keys)
        self._change(key, ours)
        return key, theirs

    def detach(self, key: int) -> None:
        """Send the worker of ``key`` no more connections; it serves those it holds."""
        self._change(key, None)

    def holding(self) -> dict[int, int]:
        """Connections each worker holds, by key: a snapshot of what the thread counts."""
        return {key: worker.holding for key, worker in list(self._workers.items())}

    def _change(self, key: int, channel: socket.socket | None) -> None:
        with self._lock:
            self._changes.append((key, channel))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed (stopped)
            self._wake_write.send(b"w")

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            logger.exception("the connection balancer failed; stopping so the service is restarted")
            self.on_failure()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._apply_changes()
            self._listen_when_able()
            timeout = self._timeout()
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_read:
                    self._drain_wakes()
                elif key.fileobj is self.listener:
                    self._accept()
                else:
                    self._read_reports(key.data)
            self._hand_waiting()

    def _timeout(self) -> float | None:
        """How long to wait for events: briefly while a connection waits for a channel or accepting
        is paused (nothing else would wake the thread when that ends), else until one comes."""
        if self._waiting:
            return 0.01
        paused = self._paused_until - time.monotonic()
        return paused if paused > 0 else None

    def _apply_changes(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, []
        for key, channel in changes:
            if channel is not None:
                self._workers[key] = _Worker(channel)
                self._selector.register(channel, selectors.EVENT_READ, key)
            else:
                self._drop(key)

    def _drop(self, key: int) -> None:
        worker = self._workers.pop(key, None)
        if worker is not None:
            self._selector.unregister(worker.channel)
            worker.channel.close()

    def _listen_when_able(self) -> None:
        """Accept only while some worker is ready and every accepted connection found one: the
        others wait in the kernel's backlog."""
        able = (
            not self._waiting
            and time.monotonic() >= self._paused_until
            and any(worker.ready for worker in self._workers.values())
        )
        if able != self._accepting:
            if able:
                self._selector.register(self.listener, selectors.EVENT_READ)
            else:
                self._selector.unregister(self.listener)
            self._accepting = able

    def _drain_wakes(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client left before it was accepted
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    now = time.monotonic()
                    if now - self._warned_at >= WARN_EVERY_SECONDS:  # not at every pause
                        logger.warning("cannot accept connections (%s): they wait in the backlog; "
                                       "raise the open-file limit (ulimit -n) or lower "
                                       "MTRANK_MAX_CONNECTIONS", exc.strerror)  # fmt: skip
                        self._warned_at = now
                    self._paused_until = now + PAUSE_SECONDS
                    return
                raise
            self._waiting.append(conn)
            self._hand_waiting()
            if self._waiting:
                return

    def _hand_waiting(self) -> None:
        while self._waiting and self._hand(self._waiting[0]):
            self._waiting.popleft().close()  # the worker has its own descriptor now

    def _hand(self, conn: socket.socket) -> bool:
        """Pass ``conn`` to the ready worker holding fewest (ties in turn); False when every
        channel is full."""
        keys = list(self._workers)
        if not keys:
            return False
        self._turn = (self._turn + 1) % len(keys)
        order = keys[self._turn :] + keys[: self._turn]
        ready = [key for key in order if self._workers[key].ready]
        for key in sorted(ready, key=lambda k: self._workers[k].holding):
            worker = self._workers[key]
            try:
                socket.send_fds(worker.channel, [CONNECTION], [conn.fileno()])
            except (BlockingIOError, InterruptedError):
                continue  # this worker is not reading: try the next
            except OSError:  # it died: its reports end too
                self._drop(key)
                continue
            worker.holding += 1
            return True
        return False

    def _read_reports(self, key: int) -> None:
        worker = self._workers.get(key)
        if worker is None:
            return
        try:
            data = worker.channel.recv(REPORT_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker exited or stopped taking connections
            self._drop(key)
            return
        if READY in data:
            worker.ready = True
        worker.holding = max(0, worker.holding - data.count(CLOSED))


class BalancedSupervisor(Multiprocess):
    """uvicorn's ``--workers`` supervisor with the connections handed out by a :class:`Balancer`."""

    def __init__(self, config: Config, listener: socket.socket) -> None:
        super().__init__(config, sockets=[])
        self.balancer = Balancer(listener, on_failure=self.should_exit.set)
        self.keys: list[int] = []  # the balancer's key of each process in ``self.processes``

    def _started(self) -> tuple[Process, int]:
        key, channel = self.balancer.attach()
        process = HandoffProcess(self.config, [channel])
        try:
            process.start()
        finally:
            channel.close()  # the worker has its own copy; ours would hide the worker's exit
        return process, key

    def run(self) -> None:
        self.balancer.start()
        try:
            super().run()
        finally:
            self.balancer.stop()

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self._add()

    def _add(self) -> None:
        process, key = self._started()
        self.processes.append(process)
        self.keys.append(key)

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or stopped answering its health check, on a new channel;
        stop everything when one failed before it started (the app cannot start: no restart loop)."""
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            self.balancer.detach(self.keys[index])
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping the parent process.",
                             process.pid)  # fmt: skip
                self.should_exit.set()
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[index], self.keys[index] = self._started()

    def restart_all(self) -> None:
        """Replace each worker in turn: the old one takes no new connection once its successor is
        ready, and serves those it holds while it drains."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new, key = self._started()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                self.balancer.detach(key)
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error("New child process [%s] was not ready in time; keeping worker "
                                 "[%s] and stopping the restart.", new.pid, old.pid)  # fmt: skip
                return
            self.balancer.detach(self.keys[index])
            old.terminate()
            old.join()
            self.processes[index], self.keys[index] = new, key

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, adding a worker.")
        self.processes_num += 1
        self._add()

    def handle_ttou(self) -> None:
        if self.processes_num <= 1:
            logger.info("Received SIGTTOU, but there is only one worker: keeping it.")
            return
        logger.info("Received SIGTTOU, retiring a worker.")
        self.processes_num -= 1
        process, key = self.processes.pop(), self.keys.pop()
        self.balancer.detach(key)
        process.terminate()
        process.join()
