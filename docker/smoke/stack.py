"""Turn the user-facing docker-compose.yml into the one docker/smoke.sh runs (and only it).

The smoke runs on a private Docker daemon with no bridge network, where published ports do nothing and
service names do not resolve; the Python docker-compose 1.x it can install refuses `network_mode: host`
next to `ports:` and the top-level `name:`. So this script keeps every service of the real file with its
environment, volumes, commands and dependencies, and changes only what the host network requires:

* every service runs with `network_mode: host` and listens on 127.0.0.1 on a free port of its own;
* `ranker-1:8000`, `redis:6379` and friends become `127.0.0.1:<port>` (environment, commands, and the
  generated copies of docker/nginx.conf and docker/prometheus.yml);
* third-party images become the Debian-built stand-in (`docker/smoke/standins.Dockerfile`); Grafana,
  which has none, is left out (the smoke runs its dashboard's queries against Prometheus instead);
* relative host paths become absolute, so the file can live outside the repository;
* with ``--store DIR`` the rankers mount that model store instead of ``./models_store`` (the smoke's
  own copy, with a second version to swap to), still read-only.

    python docker/smoke/stack.py --repo . --out DIR --standin IMAGE [--store DIR]   # KEY=VALUE lines
"""

from __future__ import annotations

import argparse
import json
import re
import socket
from pathlib import Path
from typing import Any

import yaml

RANKERS = ("ranker-1", "ranker-2")
ROLES = (*RANKERS, "lb", "redis", "prometheus", "empty")  # empty: the image on an empty store
SERVICE_PORT = 8000
STORE_MOUNT = "/models"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _retarget(text: str, hosts: dict[str, int]) -> str:
    """``name:port`` of a compose service -> ``127.0.0.1:<its smoke port>``."""
    for name, port in hosts.items():
        text = re.sub(rf"\b{re.escape(name)}:\d+", f"127.0.0.1:{port}", text)
    return text


def _absolute(volume: str, repo: Path) -> str:
    """``./x:/y`` and ``${VAR:-./x}:/y`` with the relative path made absolute."""
    volume = re.sub(
        r"\$\{(\w+):-(\.[^}]*)\}", lambda m: f"${{{m[1]}:-{(repo / m[2]).resolve()}}}", volume
    )
    if volume.startswith("."):
        source, _, rest = volume.partition(":")
        volume = f"{(repo / source).resolve()}:{rest}"
    return volume


def build(
    compose: dict[str, Any], repo: Path, out: Path, standin: str, *, store: Path | None = None
) -> dict[str, int]:
    """Write ``out``/docker-compose.yml, nginx.conf and prometheus.yml; the ports chosen, by role."""
    ports = dict(zip(ROLES, free_ports(len(ROLES)), strict=True))
    hosts = {name: ports[name] for name in (*RANKERS, "redis")}
    services: dict[str, Any] = {}
    for name, spec in compose["services"].items():
        if name == "grafana":
            continue
        service = json.loads(_retarget(json.dumps(spec), hosts))
        service.pop("ports", None)
        service["network_mode"] = "host"
        service["volumes"] = [_absolute(v, repo) for v in service.get("volumes", [])]
        if isinstance(service.get("build"), dict):
            build_spec = service["build"]
            build_spec["context"] = str((repo / build_spec.get("context", ".")).resolve())
            build_spec["network"] = "host"
            build_spec.setdefault("args", {})["PYTHON_IMAGE"] = "local/python:3.11-slim"
        elif "build" in service:  # the rankers: the smoke builds mtrank:local itself beforehand
            del service["build"]
        deps = service.get("depends_on")
        if isinstance(deps, list):
            service["depends_on"] = [d for d in deps if d != "grafana"]
        services[name] = service
    for name in RANKERS:
        port = ports[name]
        if store is not None:
            mounts = services[name]["volumes"]
            mounts[:] = [v for v in mounts if v.split(":")[1] != STORE_MOUNT]
            mounts.append(f"{store.resolve()}:{STORE_MOUNT}:ro")
        services[name]["command"] = [
            "python", "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        services[name]["healthcheck"] = {
            "test": ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen("
                     f"'http://127.0.0.1:{port}/healthz', timeout=2)"],
            "interval": "5s", "timeout": "3s", "retries": 5,
        }  # fmt: skip
    redis = services["redis"]
    redis["image"] = standin
    redis["command"] = [*redis["command"], "--bind", "127.0.0.1", "--port", str(ports["redis"])]
    redis["healthcheck"]["test"] = ["CMD", "redis-cli", "-p", str(ports["redis"]), "ping"]
    prometheus = services["prometheus"]
    prometheus["image"] = standin
    prometheus["entrypoint"] = ["/usr/bin/prometheus"]
    prometheus["command"] = [
        *prometheus["command"],
        f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        "--storage.tsdb.path=/prometheus",
    ]
    prometheus["volumes"] = [f"{out / 'prometheus.yml'}:/etc/prometheus/prometheus.yml:ro"]
    lb = services["lb"]
    lb["image"] = standin
    lb["command"] = ["nginx", "-g", "daemon off;"]
    lb["volumes"] = [f"{out / 'nginx.conf'}:/etc/nginx/conf.d/default.conf:ro"]

    nginx = _retarget((repo / "docker" / "nginx.conf").read_text(), hosts)
    nginx = re.sub(r"listen\s+\d+;", f"listen 127.0.0.1:{ports['lb']};", nginx)
    (out / "nginx.conf").write_text(nginx)
    (out / "prometheus.yml").write_text(
        _retarget((repo / "docker" / "prometheus.yml").read_text(), hosts)
    )
    (out / "docker-compose.yml").write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return ports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--standin", required=True, help="image with redis, prometheus, nginx")
    parser.add_argument("--store", type=Path, help="model store the rankers mount (read-only)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    ports = build(compose, repo, args.out.resolve(), args.standin, store=args.store)
    for role, port in ports.items():
        print(f"PORT_{role.upper().replace('-', '_')}={port}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
