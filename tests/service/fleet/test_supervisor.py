"""``--workers`` workers do not outlive a supervisor killed without stopping them."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.published_model import PublishedModel
from tests.fixtures.service_process import ServiceProcess, service_processes, worker_pids

pytestmark = pytest.mark.slow


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # an exited orphan may wait for init to reap it


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc (Linux)")
def test_workers_stop_when_their_supervisor_is_killed(
    published_store: PublishedModel, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(published_store.store_dir, store)
    env = {
        "MTRANK_MODELS_DIR": str(store),
        "MTRANK_MODEL": published_store.model,
        "MTRANK_DRAIN_SECONDS": "0.2",
        "MTRANK_SHUTDOWN_GRACE_SECONDS": "2",
    }
    service = ServiceProcess(env, workers=2)
    with service_processes(service):
        service.start()
        assert service.process is not None
        workers = worker_pids(service.process.pid)
        assert len(workers) == 2
        os.kill(service.process.pid, signal.SIGKILL)  # no chance to stop its workers
        service.process.wait(timeout=10)
        deadline = time.monotonic() + 30  # drain 0.2 s + grace 2 s + the hard exit's 5 s, and more
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if _running(pid)]
        for pid in left:  # never leave them behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"workers {left} outlived their supervisor"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{service.url}/healthz", timeout=2)
