"""deploy/k8s: every manifest validates offline (kubernetes-validate, strict); the KubeRay and
Prometheus-Operator custom resources have the fields their controllers need and their pod
templates validate as core Pods; the routes ConfigMap holds a valid routes file."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lorafleet.serving.routes import RoutesFile

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.30.0"
CORE = {"Namespace", "ConfigMap", "Deployment", "Service", "StatefulSet"}


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _pod(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": template["spec"]}


def test_there_is_something_to_validate() -> None:
    kinds = {d["kind"] for _, d in documents()}
    assert kinds >= CORE | {"RayCluster", "RayJob", "RayService", "ServiceMonitor"}


@pytest.mark.parametrize(("name", "doc"), [d for d in documents() if d[1]["kind"] in CORE],
                         ids=lambda x: x if isinstance(x, str) else x.get("kind"))
def test_core_resources_validate_strictly(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_kuberay_resources_are_complete_and_their_pods_validate() -> None:
    for name, doc in documents():
        kind = doc["kind"]
        if kind not in {"RayCluster", "RayJob", "RayService"}:
            continue
        assert doc["apiVersion"] == "ray.io/v1", name
        spec = doc["spec"]
        cluster = {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
                   "RayService": spec.get("rayClusterConfig")}[kind]
        assert cluster["rayVersion"] == "2.60.0", name
        templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
        for t in templates:
            kubernetes_validate.validate(_pod(t), VERSION, strict=True)
        if kind == "RayJob":
            assert spec["entrypoint"].startswith("platform train ")
        if kind == "RayService":
            app = yaml.safe_load(spec["serveConfigV2"])["applications"][0]
            assert app["import_path"] == "ray.serve.llm:build_openai_app"
            assert "lora_config" in app["args"]["llm_configs"][0]


def test_service_monitor_selects_services_that_exist() -> None:
    services = {d["metadata"]["labels"]["app.kubernetes.io/name"] for _, d in documents() if d["kind"] == "Service"}
    monitor = next(d for _, d in documents() if d["kind"] == "ServiceMonitor")
    wanted = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    assert wanted <= services
    ports = {p["name"] for _, d in documents() if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_routes_configmap_is_a_valid_routes_file() -> None:
    cm = next(d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "lorafleet-routes")
    routes = RoutesFile.parse_text(cm["data"]["routes.yaml"], "routes-configmap.yaml")
    assert routes.routes["support-intents"].canary.weight == 5
