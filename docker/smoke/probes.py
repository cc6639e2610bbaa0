"""The checks docker/smoke.sh runs against the live stack; each prints what it saw or exits 1 saying why.

python docker/smoke/probes.py ready URL [URL ...]          # /readyz 200 on every replica
python docker/smoke/probes.py rank LB_URL                   # /rank with features, through the LB
python docker/smoke/probes.py store-hits LB_URL             # ids-only /rank served from Redis
python docker/smoke/probes.py scraped PROM_URL N            # N mtrank targets up in Prometheus
python docker/smoke/probes.py dashboard PROM_URL            # every dashboard query returns a value
python docker/smoke/probes.py json-logs FILE [FILE ...]     # every log line is one JSON object
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "mtrank.json"
TIMEOUT_S = 90.0


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


def json_logs(*files: str) -> None:
    for name in files:
        lines = [line for line in Path(name).read_text().splitlines() if line.strip()]
        loggers = set()
        for line in lines:
            try:
                loggers.add(json.loads(line)["logger"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ProbeError(f"{name}: a log line is not a JSON entry: {line!r}") from exc
        if not {"uvicorn.error", "service.main"} <= loggers:
            raise ProbeError(f"{name}: expected uvicorn's and the service's lines, saw {loggers}")
        print(f"ok: {name}: {len(lines)} log lines, all JSON (loggers: {sorted(loggers)})")


COMMANDS: dict[str, Callable[..., None]] = {
    "ready": ready,
    "rank": rank,
    "store-hits": store_hits,
    "scraped": scraped,
    "dashboard": dashboard,
    "json-logs": json_logs,
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
