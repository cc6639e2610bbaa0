"""``fusion search`` through the command line: replay a published model's logged requests, choose
fusion weights on some requests, report on the others, write what the admin API applies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.contracts.fusion import FusionConfig
from service.main import create_app
from service.model_store import ModelStore
from service.settings import Settings
from tests.fixtures.zoo import Zoo
from tests.service.api.conftest import ADMIN_TOKEN, AppClient
from training.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def searched(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    zoo.run("ltr", "default", "ltr_weighted.yaml", "losses.relevance=ranknet")
    out = tmp_path_factory.mktemp("fusion-search")
    args = [
        "fusion",
        "search",
        "ltr",
        "--store",
        str(zoo.store),
        "--data",
        str(zoo.data / "ltr.yaml"),
    ]
    args += ["--split", "all", "--objectives", "click,ctcvr,watch_time:log1p,relevance:rank"]
    args += ["--grid", "0,1,4", "--kind", "both", "--out", str(out), "--no-progress"]
    args += ["--target", "ndcg@10:click=1,top@5:watch_time=1,ndcg@10:relevance=0.5"]
    assert main(args) == 0
    return out


def test_search_writes_a_valid_fusion_config_with_the_chosen_preset(
    zoo: Zoo, searched: Path
) -> None:
    store = ModelStore(zoo.store)
    version = store.current("ltr")
    assert version is not None
    manifest = store.read_manifest("ltr", version)
    config = FusionConfig.load(searched / "fusion.yaml")
    config.validate_objectives(manifest.objective_ids())
    assert config.default == "balanced"  # unchanged unless --make-default
    original = FusionConfig.load(store.version_dir("ltr", version) / "fusion.yaml")
    assert config.presets["balanced"] == original.presets["balanced"]
    chosen = config.presets["searched"]
    report = json.loads((searched / "report.json").read_text(encoding="utf-8"))
    if report["chosen"]["kept_default"]:  # no candidate beat the default on the search requests
        assert chosen == original.presets[original.default]
    else:
        assert set(chosen.terms) <= {"click", "ctcvr", "watch_time", "relevance"}
    admin = json.loads((searched / "admin_request.json").read_text(encoding="utf-8"))
    assert admin["version"] == version
    assert FusionConfig.model_validate(admin["fusion"]) == config


def test_search_reports_default_and_chosen_on_held_out_requests(searched: Path) -> None:
    report = json.loads((searched / "report.json").read_text(encoding="utf-8"))
    assert report["candidates"] == 2 * 3**3  # two kinds, three weights for three terms
    assert report["requests"]["search"] + report["requests"]["holdout"] == 120
    held = report["holdout"]
    assert set(held["default"]) == set(held["chosen"]) == {
        "ndcg@10:click", "top@5:watch_time", "ndcg@10:relevance"}  # fmt: skip
    assert report["chosen"]["target"] >= 2.5 - 1e-9  # never worse than the default on its rows
    assert report["pareto"]["front"]
    assert (searched / "pareto.png").stat().st_size > 10_000


def test_the_chosen_preset_ranks_through_rank_as_an_override(zoo: Zoo, searched: Path) -> None:
    config = FusionConfig.load(searched / "fusion.yaml")
    store = ModelStore(zoo.store)
    manifest = store.read_manifest("ltr", store.current("ltr") or "")
    body = manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    body["fusion"] = config.presets["searched"].model_dump(mode="json")
    settings = Settings(models_dir=zoo.store, model="ltr", log_format="text", inference_threads=1)
    with AppClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["fusion"]["name"] == "request"


def test_the_written_admin_request_is_applied_by_the_admin_fusion_route(
    zoo: Zoo, searched: Path, tmp_path: Path
) -> None:
    root = tmp_path / "store"  # the admin change is recorded in the store: a private copy
    shutil.copytree(zoo.store, root)
    store = ModelStore(root)
    manifest = store.read_manifest("ltr", store.current("ltr") or "")
    body = manifest.warmup[0].model_dump(mode="json", exclude_none=True)
    admin = json.loads((searched / "admin_request.json").read_text(encoding="utf-8"))
    settings = Settings(models_dir=root, model="ltr", log_format="text", inference_threads=1,
                        admin_token=ADMIN_TOKEN)  # fmt: skip
    with AppClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        before = client.post("/rank", json={**body, "fusion_preset": "searched"})
        assert before.status_code == 422, before.text  # not a preset of the version yet
        applied = client.post("/admin/models/fusion", json=admin,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
        assert applied.status_code == 200, applied.text
        ranked = client.post("/rank", json={**body, "fusion_preset": "searched"})
    assert ranked.status_code == 200, ranked.text
    fusion = ranked.json()["fusion"]
    assert fusion["name"] == "searched"
    chosen = FusionConfig.load(searched / "fusion.yaml").presets["searched"]
    assert set(fusion["spec"]["terms"]) == set(chosen.terms)
