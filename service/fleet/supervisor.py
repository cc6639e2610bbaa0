"""A ``--workers`` worker stops when its supervisor dies.

uvicorn's supervisor starts each worker as a multiprocessing child and stops it with SIGTERM. If the
supervisor itself dies without doing so (``kill -9``, a crash, the OOM killer), its workers are
orphaned: they keep the listening socket they inherited and go on answering on the port, so a
restarted service either cannot bind it or shares it with processes nobody manages any more.

On Linux, :func:`exit_with_supervisor` asks the kernel to send the worker SIGTERM when its parent
exits (``prctl(PR_SET_PDEATHSIG)``), which starts the usual drain (``service/fleet/drain.py``): not
ready, then a bounded shutdown. A process that is not a multiprocessing child (``--workers 1``, a
container's main process, tests) is left alone: its parent is a shell or an init, whose exit must
not stop it.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the calling process gets when its parent exits (linux/prctl.h)."""


def exit_with_supervisor() -> bool:
    """In a worker of a ``--workers`` supervisor on Linux, get SIGTERM when the supervisor exits;
    True when armed."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        logger.warning(
            "could not ask to be stopped with the supervisor (prctl: %s): if the supervisor is "
            "killed, stop this worker (pid %d) by hand",
            os.strerror(error),
            os.getpid(),
        )
        return False
    if os.getppid() != parent.pid:  # the supervisor exited before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True
