"""Deployment files, validated offline as CI can (no Docker engine, no cluster here).

docker-compose.yml against the official compose-spec JSON schema; every Kustomize
overlay rendered and each object validated against the Kubernetes OpenAPI schemas; and
the promises operators rely on: every built service is deployed, probed and budgeted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from services.common.config import DEFAULT_PORTS
from suite.services import available_services

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
KUBERNETES_VERSION = "1.32"
# The gRPC services; the gateway (HTTP, probed on /healthz) is checked on its own.
BUILT = [spec.name for spec in available_services() if spec.module == f"services.{spec.name}"]


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize("name", BUILT)
def test_compose_runs_every_built_service_healthy_first(name: str) -> None:
    service = _compose()["services"][name]
    assert service["command"][-1] == f"services.{name}"
    port = DEFAULT_PORTS[name]
    assert service["environment"][f"{name.upper()}_LISTEN"] == f"0.0.0.0:{port}"
    assert "healthcheck" in service
    assert all(
        cond["condition"] in {"service_healthy", "service_started"}
        for cond in service["depends_on"].values()
    )
    assert "service-token" in service["secrets"]


def test_compose_redis_never_evicts_and_keeps_an_aof() -> None:
    command = _compose()["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def _render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        command = [kubectl, "kustomize", str(OVERLAYS / overlay)]
    else:
        kustomize = shutil.which("kustomize")
        assert kustomize, "kubectl or kustomize is needed (tools/ensure_services.sh installs it)"
        command = [kustomize, "build", str(OVERLAYS / overlay)]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module", params=["dev", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(request.param)


def test_every_object_is_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    for document in rendered:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def _objects(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


@pytest.mark.parametrize("name", BUILT)
def test_each_service_has_deployment_probes_budget_autoscaler_service(
    rendered: list[dict[str, Any]], name: str
) -> None:
    deployment = _objects(rendered, "Deployment")[name]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = DEFAULT_PORTS[name]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    secrets = {
        e["name"] for e in container["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert {"RECKON_SERVICE_TOKEN", "DATABASE_URL"} <= secrets
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert name in _objects(rendered, "PodDisruptionBudget")
    assert (
        _objects(rendered, "HorizontalPodAutoscaler")[name]["spec"]["scaleTargetRef"]["name"]
        == name
    )
    service = _objects(rendered, "Service")[name]
    assert service["spec"]["ports"][0]["port"] == port


def test_the_gateway_is_deployed_behind_http_probes(rendered: list[dict[str, Any]]) -> None:
    compose = _compose()["services"]["gateway"]
    assert compose["command"] == ["python", "-m", "gateway"]
    assert "/healthz" in " ".join(compose["healthcheck"]["test"])
    deployment = _objects(rendered, "Deployment")["gateway"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "gateway" in _objects(rendered, "HorizontalPodAutoscaler")
    assert "gateway" in _objects(rendered, "PodDisruptionBudget")
