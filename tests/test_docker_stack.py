"""The local stack (Dockerfile, docker-compose.yml, Prometheus, Grafana) is wired consistently.

No Docker engine runs in CI, so nothing is built here: these tests check what a build or `docker compose up`
would trip over — files that do not parse, ports and paths that disagree between files, a dashboard that
queries metrics the service does not export, a serving image that could pull in torch.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.metrics import BulkHistogram, ServiceMetrics

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "mtrank.json"
SERVICE_PORT = 8000


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _runtime_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(dockerfile) if word == "FROM")
    return dockerfile[last_from:]


def _exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"expected JSON exec form, got {args}"
    return [str(part) for part in parsed]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _volumes(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> "host:container[:mode]" for each short-syntax bind mount."""
    return {spec.split(":")[1]: spec for spec in service.get("volumes", [])}


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_installs_only_the_serve_extra(dockerfile: list[tuple[str, str]]) -> None:
    commands = [
        shlex.split(part)
        for word, args in dockerfile
        if word == "RUN"
        for part in args.split("&&")
        if "pip install" in part
    ]
    targets = {
        arg for argv in commands for arg in argv[argv.index("install") + 1 :] if arg[0] != "-"
    }
    assert targets == {"pip", ".[serve]"}, (
        f"the image must install `.[serve]` only, found {targets}"
    )
    copied = " ".join(args for word, args in dockerfile if word == "COPY" and "--from" not in args)
    assert "training" not in copied, "the serving image must not contain the training package"


def test_dockerfile_fails_the_build_if_torch_is_importable(
    dockerfile: list[tuple[str, str]],
) -> None:
    check = "importlib.util.find_spec('torch') is not None"
    assert any(word == "RUN" and check in args for word, args in _runtime_stage(dockerfile))


def test_serve_extra_dependency_closure_has_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["serve"]
    ]
    closure = set(_installed_closure(roots))
    assert "torch" not in {canonicalize_name(r.name) for r in roots}
    assert "torch" not in closure, (
        "a serve dependency pulls in torch; the serving image would ship it"
    )
    assert {"onnxruntime", "fastapi", "prometheus-client"} <= closure


def _installed_closure(roots: list[Requirement]) -> Iterator[str]:
    """Names reachable from ``roots`` through the requirements of the packages installed here."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [(r, frozenset(r.extras)) for r in roots]
    while stack:
        req, extras = stack.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        yield name
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # platform-specific dependency not installed here
        for text in requires:
            child = Requirement(text)
            active = child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if active:
                stack.append((child, frozenset(child.extras)))


def test_image_runs_uvicorn_on_the_app_factory_as_non_root(
    dockerfile: list[tuple[str, str]],
) -> None:
    runtime = _runtime_stage(dockerfile)
    cmd = _exec_form(next(args for word, args in reversed(runtime) if word == "CMD"))
    assert cmd[0] == "uvicorn"
    assert "--factory" in cmd
    assert "service.main:create_app" in cmd
    assert _option(cmd, "--host") == "0.0.0.0"
    assert int(_option(cmd, "--port")) == SERVICE_PORT
    assert ("EXPOSE", str(SERVICE_PORT)) in runtime
    user = next(args for word, args in reversed(runtime) if word == "USER")
    assert user not in {"root", "0"}
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "MTRANK_MODELS_DIR=/models" in env


def test_healthcheck_probes_healthz_on_the_service_port(dockerfile: list[tuple[str, str]]) -> None:
    health = next(args for word, args in _runtime_stage(dockerfile) if word == "HEALTHCHECK")
    probe = health.split("CMD", 1)[1]
    assert f"http://127.0.0.1:{SERVICE_PORT}/healthz" in probe


# --- .dockerignore ----------------------------------------------------------------------------------------


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = (
            re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        )
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        "training/models/mmoe.py",
        "tests/test_docker_stack.py",
        "models_store/feed/current",
        ".venv/bin/python",
        "data/sim/items.parquet",
        "runs/sim/checkpoint.pt",
        ".git/HEAD",
        "service/__pycache__/main.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_out_of_the_build_context(path: str) -> None:
    assert _dockerignore_excludes(path)


def test_every_file_the_dockerfile_copies_is_in_the_build_context(
    dockerfile: list[tuple[str, str]],
) -> None:
    sources = [
        src
        for word, args in dockerfile
        if word == "COPY" and "--from" not in args
        for src in shlex.split(args)[:-1]
    ]
    assert sources
    for src in sources:
        probe = f"{src.rstrip('/')}/main.py" if (ROOT / src).is_dir() else src
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not _dockerignore_excludes(probe), f"COPY {src}: excluded by .dockerignore"


# --- docker-compose.yml -----------------------------------------------------------------------------------


def test_compose_runs_the_service_redis_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mtrank", "redis", "prometheus", "grafana"} <= set(services)
    assert services["mtrank"]["ports"] == [f"{SERVICE_PORT}:{SERVICE_PORT}"]
    assert services["grafana"]["ports"] == ["3000:3000"]
    assert services["redis"]["image"].startswith("redis:7-alpine")
    started = [name for name, svc in services.items() if not svc.get("profiles")]
    assert "features-loader" not in started, "the one-shot loader must not start with `compose up`"


def test_service_reads_models_read_only_and_finds_redis_by_service_name(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["mtrank"]
    assert service["build"] == "."
    assert _volumes(service)["/models"] == "./models_store:/models:ro"
    env = _environment(service)
    assert env["MTRANK_MODELS_DIR"] == "/models"
    assert env["MTRANK_REDIS_URL"] == "redis://redis:6379/0"
    assert env["MTRANK_MODEL"]


def test_redis_keeps_nothing_on_disk(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert _option(command, "--save") == ""
    assert _option(command, "--appendonly") == "no"
    assert "volumes" not in compose["services"]["redis"]


def test_prometheus_scrapes_the_service_metrics_every_5_seconds(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    host_path = _volumes(prometheus)[flag.removeprefix("--config.file=")].split(":")[0]
    assert (ROOT / host_path).resolve() == DOCKER / "prometheus.yml"
    config = _yaml(DOCKER / "prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "mtrank"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"mtrank:{SERVICE_PORT}"]
    assert "mtrank" in compose["services"]


def test_grafana_provisions_the_datasource_and_dashboard_for_anonymous_viewers(
    compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    grafana = compose["services"]["grafana"]
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = _volumes(grafana)
    assert mounts["/etc/grafana/provisioning"].startswith("./docker/grafana/provisioning:")
    dashboards_in_container = "/var/lib/grafana/dashboards"
    assert mounts[dashboards_in_container].startswith("./docker/grafana/dashboards:")

    provisioning = DOCKER / "grafana" / "provisioning"
    (provider,) = _yaml(provisioning / "dashboards" / "mtrank.yml")["providers"]
    assert provider["options"]["path"] == dashboards_in_container
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/{DASHBOARD.name}"

    (datasource,) = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    used = {
        json.dumps(node["datasource"], sort_keys=True)
        for node in _walk(dashboard)
        if isinstance(node.get("datasource"), dict)
        and node["datasource"].get("type") == "prometheus"
    }
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}


# --- Grafana dashboard ------------------------------------------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_panels_have_unique_ids_and_queries(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert all(t["expr"].strip() for t in panel["targets"])


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_every_signal_the_brief_asks_for(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(_expressions(dashboard))
    for q in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({q}, sum by (endpoint, le)" in exprs
    kinds = {p["type"] for p in _panels(dashboard)}
    assert "heatmap" in kinds


# --- dashboard metric names against what the service exports ---------------------------------------------

# The dashboard may only query what service/metrics.py registers: the families are read from a fresh
# ServiceMetrics, so renaming a metric there fails this module until the dashboard follows.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count"),
}
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series


def _service_families() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Family name -> (type, label names) of every metric ServiceMetrics registers."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    metrics = ServiceMetrics(CollectorRegistry())
    families = {}
    for value in vars(metrics).values():
        if isinstance(value, BulkHistogram):
            families[value.name] = ("histogram", value.labelnames)
        elif isinstance(value, MetricWrapperBase):
            # _name/_type/_labelnames: the only way to read an unobserved family's label names
            families[str(value._name)] = (str(value._type), tuple(value._labelnames))
    return families


def _exported_series() -> dict[str, set[str]]:
    """Series name as a scrape shows it (``..._total``, ``..._bucket``) -> the label names it may carry."""
    series: dict[str, set[str]] = {}
    for name, (kind, labels) in _service_families().items():
        for suffix in SUFFIXES[kind]:
            series[name + suffix] = (
                set(labels) | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
            )
    return series


def _metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bmtrank_[a-z0-9_]+", expr))


def _labels_in(expr: str) -> set[str]:
    grouped = {
        label.strip()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }
    selected = {
        label
        for selector in re.findall(r"\bmtrank_[a-z0-9_]+\{([^}]*)\}", expr)
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector)
    }
    label_values = set(re.findall(r"label_values\(\s*mtrank_[a-z0-9_]+\s*,\s*(\w+)\s*\)", expr))
    return grouped | selected | label_values


def test_exported_series_follow_prometheus_naming() -> None:
    series = _exported_series()
    assert "mtrank_requests_total" in series
    assert "mtrank_request_duration_seconds_bucket" in series
    assert "mtrank_requests" not in series
    assert "le" in series["mtrank_stage_duration_seconds_bucket"]
    assert "le" not in series["mtrank_stage_duration_seconds_count"]


def test_dashboard_queries_only_metrics_and_labels_the_service_exports(
    dashboard: dict[str, Any],
) -> None:
    exported = _exported_series()
    used: set[str] = set()
    for expr in _expressions(dashboard):
        names = _metrics_in(expr)
        assert names, f"query uses no mtrank metric: {expr}"
        unknown = names - exported.keys()
        assert not unknown, f"{sorted(unknown)} not exported by the service (query: {expr})"
        allowed = set.union(*(exported[name] for name in names))
        assert _labels_in(expr) <= allowed, (
            f"labels {_labels_in(expr) - allowed} unknown in: {expr}"
        )
        used |= names
    families = {name for name in exported if not name.endswith(("_sum", "_count"))}
    assert families <= used, f"no panel shows {sorted(families - used)}"


def test_label_extraction_sees_grouping_selectors_and_variables() -> None:
    expr = 'sum by (endpoint, le) (rate(mtrank_x_bucket{stage=~"a", result!="b"}[5m]))'
    assert _labels_in(expr) == {"endpoint", "le", "stage", "result"}
    assert _labels_in("label_values(mtrank_objective_score_bucket, objective)") == {"objective"}
