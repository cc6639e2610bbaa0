"""deploy/kubernetes validated offline against the Kubernetes API schemas kubernetes-validate
ships (never a live cluster), and checked for what the service needs from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSION = k8s.latest_version()


def _documents() -> dict[str, dict[str, Any]]:
    """kind/name -> resource, for every manifest the kustomization lists."""
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(
        p.name for p in ROOT.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    found = {}
    for name in listed:
        for doc in yaml.safe_load_all((ROOT / name).read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return _documents()


def test_every_manifest_passes_the_kubernetes_schemas_strictly(
    docs: dict[str, dict[str, Any]],
) -> None:
    for doc in docs.values():
        k8s.validate(doc, VERSION, strict=True)  # raises ValidationError naming the field
    assert {"Deployment/mtrank", "Service/mtrank", "HorizontalPodAutoscaler/mtrank"} <= set(docs)
    assert {"PodDisruptionBudget/mtrank", "Deployment/mtrank-redis", "Service/mtrank-redis"} <= set(
        docs
    )


def test_the_validator_rejects_a_broken_deployment(docs: dict[str, dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(docs["Deployment/mtrank"]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(k8s.ValidationError):
        k8s.validate(broken, VERSION, strict=True)
    typo = yaml.safe_load(yaml.safe_dump(docs["Deployment/mtrank"]))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(k8s.ValidationError):
        k8s.validate(typo, VERSION, strict=True)


def test_deployment_probes_resources_and_read_only_model_store(
    docs: dict[str, dict[str, Any]],
) -> None:
    pod = docs["Deployment/mtrank"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    requests = container["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = docs["ConfigMap/mtrank"]["data"]
    assert mounts["models"]["readOnly"] is True
    assert mounts["models"]["mountPath"] == config["MTRANK_MODELS_DIR"]
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    claim = docs["PersistentVolumeClaim/" + volumes["models"]["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    redis_host = config["MTRANK_REDIS_URL"].split("//")[1].split(":")[0]
    assert f"Service/{redis_host}" in docs  # Redis is part of the stack


def test_autoscaler_and_disruption_budget_cover_the_deployment(
    docs: dict[str, dict[str, Any]],
) -> None:
    labels = docs["Deployment/mtrank"]["spec"]["template"]["metadata"]["labels"]
    hpa = docs["HorizontalPodAutoscaler/mtrank"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mtrank",
    }
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["minReplicas"] >= 2
    pdb = docs["PodDisruptionBudget/mtrank"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < hpa["minReplicas"]
    assert docs["Service/mtrank"]["spec"]["selector"].items() <= labels.items()
