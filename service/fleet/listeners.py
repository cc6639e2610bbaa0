"""``--workers N`` with one listening socket per worker, so the kernel spreads connections over them.

uvicorn's supervisor binds one socket and every worker accepts from it. A worker woken by a new
connection accepts every connection already queued (libuv accepts until the queue is empty), so of
connections opened together (a load balancer's upstream pool, a client's keep-alive pool, a load
test) the worker that woke first takes most: of 8 connections opened at once to ``serve --workers
2``, one worker took 6 or 7 in every trial, and in a closed loop at 500 candidates each request on
those connections took 2.9x (6 of 8) to 6.6x (7 of 8) as long as one on the other worker's.

:class:`SpreadSupervisor` is uvicorn's supervisor with a socket of its own for each worker slot,
all bound to the same address with ``SO_REUSEPORT``: the kernel picks the socket of each new
connection by a hash of its addresses, so connections opened together spread over the workers as
connections from many clients do. A worker that dies is replaced on its slot's socket (connections
the kernel queued there meanwhile wait for the replacement); ``SIGHUP`` replaces each worker in
turn on its own socket. Changing the number of workers while running (``SIGTTIN``/``SIGTTOU``) is
refused with a warning: restart with another ``--workers``.

:func:`spread_supported` says whether this applies (Linux-like ``SO_REUSEPORT``, a TCP address, and
uvicorn's supervisor of the shape this subclass expects); where it does not, ``serve`` runs uvicorn's
own supervisor on one shared socket, as before.
"""

from __future__ import annotations

import inspect
import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def spread_supported(config: Config) -> str | None:
    """None when :class:`SpreadSupervisor` can serve ``config``, else why not."""
    if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
        return "SO_REUSEPORT does not spread connections on this platform"
    if config.uds is not None or config.fd is not None:
        return "the server listens on a unix socket or an inherited descriptor"
    if list(inspect.signature(Process).parameters) != ["config", "sockets"]:
        return "this uvicorn's supervisor differs from the one mtrank extends"
    return None


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP sockets bound to ``(host, port)`` with ``SO_REUSEPORT``, not yet listening (each
    worker listens on its own); with port 0, the port the first one got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class SpreadSupervisor(Multiprocess):
    """uvicorn's ``--workers`` supervisor with the socket of slot k given to worker k only."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        if len(sockets) != self.processes_num:
            raise ValueError(
                f"{self.processes_num} workers need as many sockets, got {len(sockets)}"
            )
        self.slot_sockets = sockets

    def _started(self, slot: int) -> Process:
        process = Process(self.config, [self.slot_sockets[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._started(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or stopped answering its health check, on its own socket;
        stop everything when one failed before it started (the app cannot start: no restart loop)."""
        for slot, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping the parent process.",
                             process.pid)  # fmt: skip
                self.should_exit.set()
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[slot] = self._started(slot)

    def restart_all(self) -> None:
        """Replace each worker in turn: its successor serves the same socket before it stops."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._started(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error("New child process [%s] was not ready in time; keeping worker "
                                 "[%s] and stopping the restart.", new.pid, old.pid)  # fmt: skip
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        logger.warning("SIGTTIN ignored: each worker has its own socket; restart with --workers")

    def handle_ttou(self) -> None:
        logger.warning("SIGTTOU ignored: each worker has its own socket; restart with --workers")
