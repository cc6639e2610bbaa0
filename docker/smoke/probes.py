"""The checks docker/smoke.sh runs against the live stack; each prints what it saw or exits 1 saying why.

python docker/smoke/probes.py ready URL [URL ...]          # /readyz 200 on every replica
python docker/smoke/probes.py rank LB_URL                   # /rank with features, through the LB
python docker/smoke/probes.py store-hits LB_URL             # ids-only /rank served from Redis
python docker/smoke/probes.py scraped PROM_URL N            # N mtrank targets up in Prometheus
python docker/smoke/probes.py dashboard PROM_URL            # every dashboard query returns a value
python docker/smoke/probes.py json-logs FILE [FILE ...]     # every log line is one JSON object
python docker/smoke/probes.py swap LB_URL PROM_URL VERSION URL [URL ...]
    # an admin load through the LB reaches every replica (MTRANK_ADMIN_TOKEN from the environment)
python docker/smoke/probes.py not-ready URL                 # alive, /readyz 503 with a reason
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "mtrank.json"
TIMEOUT_S = 90.0
# An admin load answers once the receiving replica switched; every other one follows within one Redis
# message plus one load, or one poll (MTRANK_FLEET_POLL_SECONDS, 2 s) plus one load if it missed it.
SWAP_BOUND_S = 10.0


class ProbeError(Exception):
    pass


def _until(what: str, check: Callable[[], str | None], timeout: float = TIMEOUT_S) -> None:
    """Retry ``check`` (None = passed, else what is still wrong) until it passes or time runs out."""
    deadline = time.monotonic() + timeout
    problem: str | None = "never checked"
    while time.monotonic() < deadline:
        try:
            problem = check()
        except httpx.HTTPError as exc:
            problem = repr(exc)
        if problem is None:
            print(f"ok: {what}")
            return
        time.sleep(1.0)
    raise ProbeError(f"{what}: still failing after {timeout:g} s: {problem}")


def ready(*urls: str) -> None:
    for url in urls:

        def check(url: str = url) -> str | None:
            response = httpx.get(f"{url}/readyz", timeout=3)
            return (
                None if response.status_code == 200 else f"{response.status_code} {response.text}"
            )

        _until(f"{url}/readyz answers 200", check)


def _body(mode: str) -> dict[str, Any]:
    from service.loadtest.session import model_spec
    from service.loadtest.workload import Tables, Workload, WorkloadConfig

    tables = Tables.read(REPO / "demo" / "users.parquet", REPO / "demo" / "items.parquet")
    spec = model_spec(REPO / "models_store", "demo")
    config = WorkloadConfig(mode="ids" if mode == "ids" else "features", candidates=20, seed=3)
    return Workload(tables, config, spec).body(20) | {"explain": True}


def _rank(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/rank", json=body, timeout=10)
    if response.status_code != 200:
        raise ProbeError(f"/rank through {url} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    if len(answer["items"]) != len(body["candidates"]) or answer["model"]["name"] != "demo":
        raise ProbeError(f"/rank through {url}: unexpected answer {str(answer)[:400]}")
    return answer


def rank(url: str) -> None:
    answer = _rank(url, _body("features"))
    top = answer["items"][0]
    print(f"ok: /rank through the load balancer: {answer['model']}, top item {top['id']} {top}")


def store_hits(url: str) -> None:
    answer = _rank(url, _body("ids"))
    fetch = answer["explain"]["feature_fetch"]
    if not fetch or fetch["hits"] != 21 or fetch["misses"] != 0:  # the user and 20 candidates
        raise ProbeError(f"ids-only /rank: expected 21 store hits, 0 misses, got {fetch}")
    print(f"ok: ids-only /rank served from Redis: {fetch}")


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    payload = response.json()
    if payload.get("status") != "success":
        raise ProbeError(f"Prometheus refused {expr!r}: {payload}")
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def scraped(prom: str, count: str) -> None:
    def check() -> str | None:
        up = _query(prom, 'up{job="mtrank"}')
        healthy = [s["metric"]["instance"] for s in up if s["value"][1] == "1"]
        return None if len(healthy) == int(count) else f"targets up: {healthy or 'none'}"

    _until(f"Prometheus scrapes {count} replicas", check)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel, with Grafana's variables replaced."""
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$objective", ".*")
            queries.append((panel["title"], expr))
    return queries


def dashboard(prom: str) -> None:
    """Every panel query returns at least one finite value (a panel never shows "No data")."""
    board = json.loads(DASHBOARD.read_text())
    for variable in board["templating"]["list"]:
        name, label = variable["name"], variable["definition"]
        response = httpx.get(f"{prom}/api/v1/label/{name}/values", timeout=5).json()
        if not response.get("data"):
            raise ProbeError(f"dashboard variable {name} ({label}) has no values")
    queries = dashboard_queries()

    def check() -> str | None:
        empty = []
        for title, expr in queries:
            values = [float(s["value"][1]) for s in _query(prom, expr)]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{title}: {expr} -> {values or 'no series'}")
        return None if not empty else "; ".join(empty)

    _until(f"all {len(queries)} dashboard queries return a value", check)


def _admin_headers() -> dict[str, str]:
    token = os.environ.get("MTRANK_ADMIN_TOKEN")
    if not token:
        raise ProbeError("MTRANK_ADMIN_TOKEN is not set: the admin API is off")
    return {"Authorization": f"Bearer {token}"}


def swap(lb: str, prom: str, version: str, *replicas: str) -> None:
    """``POST /admin/models/load`` through the load balancer reaches every replica, not just one.

    nginx sends the call to one replica; the others must follow through the recorded choice (Redis:
    the rankers mount the store read-only). Each replica is asked directly, within ``SWAP_BOUND_S`` of
    the admin answer: its ``/admin/models`` names ``version`` as what it serves and as the fleet's
    choice, and a ``/rank`` sent to it is scored by ``version``; then Prometheus sees every replica's
    ``mtrank_model_info`` on the new version (the dashboard's "Serving model" panel).
    """
    headers = _admin_headers()
    before = [httpx.get(f"{url}/readyz", timeout=3).json()["model"]["version"] for url in replicas]
    if version in before:
        raise ProbeError(
            f"{version} is served before the swap ({before}): the probe proves nothing"
        )
    started = time.monotonic()
    response = httpx.post(
        f"{lb}/admin/models/load", json={"version": version}, headers=headers, timeout=60
    )
    answered_at = time.monotonic()
    answered = answered_at - started
    if response.status_code != 200:
        raise ProbeError(f"admin load through {lb}: {response.status_code} {response.text}")
    change = response.json()
    print(f"ok: admin load of {version} through the load balancer answered in {answered:.2f} s: "
          f"recorded in {change.get('recorded_in')}")  # fmt: skip
    if "redis" not in change.get("recorded_in", []):
        raise ProbeError(f"the choice was not recorded in Redis, the only shared record: {change}")
    body = _body("features")
    for url in replicas:
        seen: dict[str, Any] = {}

        def check(url: str = url, seen: dict[str, Any] = seen) -> str | None:
            models = httpx.get(f"{url}/admin/models", headers=headers, timeout=3).json()
            active = (models.get("active") or {}).get("version")
            chosen = (models.get("fleet") or {}).get("serving")
            problem = None
            if active != version or chosen != version:
                problem = f"serves {active}, fleet choice {chosen}"
            elif (scored_by := _rank(url, body)["model"]["version"]) != version:
                problem = f"/rank scored by {scored_by}"
            if problem is not None:
                seen.setdefault("first", problem)
                return problem
            seen["after"] = time.monotonic() - answered_at
            return None

        left = answered_at + SWAP_BOUND_S - time.monotonic()
        _until(f"{url} serves {version}", check, timeout=max(left, 1.0))
        if seen["after"] > SWAP_BOUND_S:
            raise ProbeError(f"{url} switched {seen['after']:.2f} s after the admin answer")
        print(f"   {url}: confirmed {seen['after']:.2f} s after the admin answer, probe time included "
              f"(bound {SWAP_BOUND_S:g} s; first look: {seen.get('first', 'already switched')})")  # fmt: skip

    def scraped_version() -> str | None:
        series = _query(prom, 'mtrank_model_info{job="mtrank"} == 1')
        versions = sorted(s["metric"]["version"] for s in series)
        return None if versions == [version] * len(replicas) else f"model_info: {versions}"

    _until(f"Prometheus sees all {len(replicas)} replicas on {version}", scraped_version)


def not_ready(url: str) -> None:
    """Alive (``/healthz`` 200) but not ready (``/readyz`` 503 saying why): nothing to serve yet."""

    def check() -> str | None:
        health = httpx.get(f"{url}/healthz", timeout=3)
        if health.status_code != 200:
            return f"/healthz {health.status_code}"
        ready = httpx.get(f"{url}/readyz", timeout=3)
        reason = ready.json().get("error", {}).get("message", "") if ready.content else ""
        if ready.status_code != 503 or not reason:
            return f"/readyz {ready.status_code} {ready.text!r}: expected 503 with a reason"
        print(f"   /readyz 503: {reason}")
        return None

    _until(f"{url} is alive and not ready", check)


def json_logs(*files: str) -> None:
    """Every line is one JSON entry, uvicorn's among the service's, and none is a warning from
    onnxruntime (its telemetry/home-directory complaint, the issue's "every start logs a warning")."""
    for name in files:
        lines = [line for line in Path(name).read_text().splitlines() if line.strip()]
        loggers = set()
        for line in lines:
            try:
                entry = json.loads(line)
                loggers.add(entry["logger"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ProbeError(f"{name}: a log line is not a JSON entry: {line!r}") from exc
            if entry.get("level") in {"WARNING", "ERROR"} and "onnxruntime" in line.lower():
                raise ProbeError(f"{name}: onnxruntime complained: {line!r}")
        if "uvicorn.error" not in loggers or not any(n.startswith("service.") for n in loggers):
            raise ProbeError(f"{name}: expected uvicorn's and the service's lines, saw {loggers}")
        print(f"ok: {name}: {len(lines)} log lines, all JSON (loggers: {sorted(loggers)})")


COMMANDS: dict[str, Callable[..., None]] = {
    "ready": ready,
    "rank": rank,
    "store-hits": store_hits,
    "scraped": scraped,
    "dashboard": dashboard,
    "json-logs": json_logs,
    "swap": swap,
    "not-ready": not_ready,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]](*argv[1:])
    except ProbeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
