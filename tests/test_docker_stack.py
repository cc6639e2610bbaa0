"""Cheap static checks of the Docker stack (Dockerfile, docker-compose.yml, nginx, Prometheus, Grafana).

The stack itself is built and run for real by ``docker/smoke.sh`` (``.ci/run`` calls it after this test
suite): images built with both builders, two replicas behind nginx, Redis, Prometheus, every dashboard
query answered. What stays here is what fails in a second, before any build: files that do not parse,
names and ports that disagree between files, a Dockerfile construct one of the builders rejects, a
dashboard querying a metric the service does not export, a serving dependency that pulls in torch.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
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
from service.model_store import ModelStore

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
    mounts = {}
    for spec in service.get("volumes", []):
        parts = spec.rsplit(":", 2)  # the host side may hold ${VAR:-default}
        mounts[parts[-2] if parts[-1] in {"ro", "rw"} else parts[-1]] = spec
    return mounts


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_builds_with_the_classic_builder_and_pulls_only_the_base(
    dockerfile: list[tuple[str, str]],
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.MULTILINE), (
        "a `# syntax=` line makes BuildKit pull a frontend image from Docker Hub"
    )
    assert not any(word == "RUN" and "--mount" in args for word, args in dockerfile), (
        "RUN --mount needs BuildKit; the classic builder rejects it"
    )
    bases = {args.split()[0] for word, args in dockerfile if word == "FROM"}
    stages = {args.split()[-1] for word, args in dockerfile if word == "FROM" and " AS " in args}
    assert bases - stages == {"${PYTHON_IMAGE}"}


def test_dockerfile_installs_the_serve_extra_by_default_and_no_training_code(
    dockerfile: list[tuple[str, str]],
) -> None:
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
    # the cached dependency layer (the core dependencies and the MTRANK_EXTRAS extras, read from
    # pyproject.toml), then the package itself without resolving anything again
    assert targets == {"/tmp/requirements.txt", "."}, targets
    listed = next(args for word, args in dockerfile if word == "RUN" and "requirements.txt" in args)
    assert "os.environ['MTRANK_EXTRAS']" in listed
    assert ("ARG", "MTRANK_EXTRAS=serve") in dockerfile
    copied = " ".join(args for word, args in dockerfile if word == "COPY" and "--from" not in args)
    assert "training" not in copied, "the serving image must not contain the training package"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any(r.startswith("pyarrow") for r in extras["serve"]), (
        "pyarrow (170 MB) belongs to the `features` extra, not to the serving image"
    )


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


def test_image_serves_with_the_head_guard_as_non_root_with_a_home(
    dockerfile: list[tuple[str, str]],
) -> None:
    runtime = _runtime_stage(dockerfile)
    cmd = _exec_form(next(args for word, args in reversed(runtime) if word == "CMD"))
    # `serve`, not bare uvicorn: it adds the request-head deadline and size limit (docs/deployment.md)
    assert cmd[:4] == ["python", "-m", "service", "serve"]
    assert _option(cmd, "--host") == "0.0.0.0"
    assert int(_option(cmd, "--port")) == SERVICE_PORT
    assert ("EXPOSE", str(SERVICE_PORT)) in runtime
    user = next(args for word, args in reversed(runtime) if word == "USER")
    assert user not in {"root", "0"}
    created = next(args for word, args in runtime if word == "RUN" and "useradd" in args)
    assert "--create-home" in created, "onnxruntime warns at every start when the user has no home"
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "MTRANK_MODELS_DIR=/models" in env
    assert "MTRANK_LOG_FORMAT=json" in env


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


# --- docker-compose.yml, nginx, Prometheus ---------------------------------------------------------------

RANKERS = ["ranker-1", "ranker-2"]


def test_compose_runs_two_identical_rankers_behind_the_load_balancer(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {*RANKERS, "lb", "redis", "prometheus", "grafana", "features-loader"} == set(services)
    first, second = (services[name] for name in RANKERS)
    assert first == second
    assert first["build"] == "."
    assert "ports" not in first, "replicas are reached through the load balancer only"
    assert _volumes(first)["/models"] == "./models_store:/models:ro"
    env = _environment(first)
    assert env["MTRANK_MODELS_DIR"] == "/models"
    assert env["MTRANK_REDIS_URL"] == "redis://redis:6379/0"
    assert env["MTRANK_MODEL"] == "${MTRANK_MODEL:-demo}"  # the committed demo model by default
    assert (ROOT / "models_store" / "demo" / "current").is_file()
    assert first["environment"]["MTRANK_ADMIN_TOKEN"] is None  # from the shell, or unset
    started = [name for name, svc in services.items() if not svc.get("profiles")]
    assert "features-loader" not in started, "the one-shot loader must not start with `compose up`"


def test_every_published_port_is_loopback_only(compose: dict[str, Any]) -> None:
    published = {
        name: svc["ports"] for name, svc in compose["services"].items() if svc.get("ports")
    }
    assert published == {
        "lb": ["127.0.0.1:8000:8000"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "grafana": ["127.0.0.1:3000:3000"],
    }


def test_nginx_balances_over_the_rankers_and_accepts_the_service_body_limit() -> None:
    from service.settings import Settings

    conf = (DOCKER / "nginx.conf").read_text()
    upstream = re.search(r"upstream rankers \{(.*?)\}", conf, flags=re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(1), flags=re.MULTILINE)
    assert servers == [(name, str(SERVICE_PORT)) for name in RANKERS]
    assert re.search(rf"listen\s+{SERVICE_PORT};", conf)
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert size is not None
    assert int(size.group(1)) * 1024 * 1024 == Settings.model_fields["max_body_bytes"].default
    admin = re.search(r"location /admin/ \{(.*?)\}", conf, flags=re.DOTALL)
    assert admin is not None
    assert "proxy_next_upstream off;" in admin.group(1), "a model load must never be retried"


def test_features_loader_adds_pyarrow_and_loads_the_demo_tables(compose: dict[str, Any]) -> None:
    loader = compose["services"]["features-loader"]
    assert loader["profiles"] == ["tools"]
    assert loader["build"]["args"]["MTRANK_EXTRAS"] == "serve,features"
    assert loader["image"] != compose["services"]["ranker-1"]["image"]
    host_dir = _volumes(loader)["/data"].rsplit(":", 2)[0]
    assert host_dir == "${MTRANK_FEATURES_DIR:-./demo}"
    for table in ("users.parquet", "items.parquet"):
        assert f"/data/{table}" in loader["command"]
        assert (ROOT / "demo" / table).is_file()


def test_redis_keeps_nothing_on_disk(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert _option(command, "--save") == ""
    assert _option(command, "--appendonly") == "no"
    assert "volumes" not in compose["services"]["redis"]


def test_prometheus_scrapes_each_replica_every_5_seconds(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    host_path = _volumes(prometheus)[flag.removeprefix("--config.file=")].split(":")[0]
    assert (ROOT / host_path).resolve() == DOCKER / "prometheus.yml"
    config = _yaml(DOCKER / "prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "mtrank"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"{name}:{SERVICE_PORT}" for name in RANKERS]


def test_grafana_provisions_the_datasource_and_dashboard_for_anonymous_viewers(
    compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    # Grafana is not packaged by Debian, so the smoke runs the dashboard's queries, not Grafana itself
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
    assert "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]
    used = {
        json.dumps(node["datasource"], sort_keys=True)
        for node in _walk(dashboard)
        if isinstance(node.get("datasource"), dict)
        and node["datasource"].get("type") == "prometheus"
    }
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}


def test_the_smoke_runs_every_service_but_grafana_on_loopback_ports(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("smoke_stack", DOCKER / "smoke" / "stack.py")
    assert spec is not None
    assert spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    ports = stack.build(compose, ROOT, tmp_path, "standin")
    generated = _yaml(tmp_path / "docker-compose.yml")["services"]
    assert set(generated) == set(compose["services"]) - {"grafana"}
    text = json.dumps(generated) + (tmp_path / "nginx.conf").read_text()
    text += (tmp_path / "prometheus.yml").read_text()
    for name in ("ranker-1", "ranker-2", "redis"):
        assert not re.search(rf"\b{name}:\d", text), f"{name} still addressed by its service name"
    for service in generated.values():
        assert service["network_mode"] == "host"
        assert "ports" not in service
    assert f"127.0.0.1:{ports['lb']}" in (tmp_path / "nginx.conf").read_text()
    assert generated["ranker-1"]["environment"] == {
        **compose["services"]["ranker-1"]["environment"],
        "MTRANK_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
    }
    assert len(set(ports.values())) == len(ports)


def test_the_smoke_mounts_its_own_store_read_only_in_both_rankers(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("smoke_stack", DOCKER / "smoke" / "stack.py")
    assert spec is not None
    assert spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    store = tmp_path / "store"
    stack.build(compose, ROOT, tmp_path, "standin", store=store)
    generated = _yaml(tmp_path / "docker-compose.yml")["services"]
    for name in ("ranker-1", "ranker-2"):
        mounts = [v for v in generated[name]["volumes"] if v.split(":")[1] == "/models"]
        assert mounts == [f"{store.resolve()}:/models:ro"], name


def test_the_smoke_store_has_a_second_demo_version_readable_by_everyone(tmp_path: Path) -> None:
    """Published under umask 077 and still readable by the image's uid 10001 (any other user)."""
    spec = importlib.util.spec_from_file_location("smoke_store", DOCKER / "smoke" / "store.py")
    assert spec is not None
    assert spec.loader is not None
    smoke_store = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke_store)
    shutil.copytree(ROOT / "models_store" / "demo", tmp_path / "demo")
    store = ModelStore(tmp_path)
    serving = store.current("demo")
    assert serving is not None
    swap = smoke_store.second_version(store, "demo", serving)
    assert store.versions("demo") == [serving, swap]
    assert store.current("demo") == serving
    assert store.verify("demo", swap).version == swap
    files = [tmp_path, tmp_path / "demo", *(tmp_path / "demo" / swap).rglob("*")]
    assert all(path.stat().st_mode & 0o004 for path in files)


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
