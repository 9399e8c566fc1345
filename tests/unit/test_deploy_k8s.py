"""deploy/k8s is what the fleet topology renders, and runs what the fleet tests run.

- the committed files are byte for byte ``platform deploy render``'s output;
- every container's command, environment, secret references, mounts, port and probes are the
  topology Process of its role (lorafleet/platform/topology.py, which the fleet test starts);
- no mount uses subPath (kubelet never updates a subPath mount); every secret comes from a
  secretKeyRef and secrets.sh creates each one referenced, from the environment;
- every object validates offline (kubernetes-validate, strict; KubeRay pods as core Pods);
- no Ray dashboard, GCS or client port answers without Ray's token, and the standalone Ray
  cluster's dashboard listens on the head pod's loopback only;
- an engine cannot run without the engine API key that guards vLLM's /v1 paths.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lorafleet.core.errors import InputError
from lorafleet.core.settings import Settings
from lorafleet.platform import deploy_render as dr
from lorafleet.platform import topology as t

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"
CORE = {"Namespace", "Deployment", "Service", "StatefulSet", "NetworkPolicy", "PersistentVolumeClaim"}
RAY = {"RayCluster", "RayJob", "RayService"}
RENDER = "platform deploy render --out deploy/k8s"
ROLES = {"gateway", "engine", "redis", "trainer", "rayserve"}


def parse(files: dict[str, str]) -> list[tuple[str, dict]]:
    return [(name, d) for name, text in sorted(files.items()) if name.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


def committed() -> list[tuple[str, dict]]:
    return parse({p.name: p.read_text(encoding="utf-8") for p in K8S.iterdir() if p.is_file()})


def ray_cluster(doc: dict) -> dict:
    return {"RayCluster": lambda s: s, "RayJob": lambda s: s["rayClusterSpec"],
            "RayService": lambda s: s["rayClusterConfig"]}[doc["kind"]](doc["spec"])


def containers(docs: list[tuple[str, dict]]) -> list[tuple[str, str, dict, dict]]:
    """(where, role, container, owning object) for every container of every pod template."""
    out = []
    for name, doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            role = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            out += [(f"{name}/{c['name']}", role, c, doc) for c in doc["spec"]["template"]["spec"]["containers"]]
        elif doc["kind"] in RAY:
            cluster = ray_cluster(doc)
            role = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
            out += [(f"{name}/{c['name']}", role, c, doc) for tpl in templates for c in tpl["spec"]["containers"]]
    return out


def differences(docs: list[tuple[str, dict]], fleet: t.Fleet) -> list[str]:
    """Every way a container of ``docs`` differs from the topology Process of its role."""
    found = []
    for where, role, c, doc in containers(docs):
        p = t.processes(fleet)[role]
        env = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
        secrets = {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                   for e in c.get("env", []) if "valueFrom" in e}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for what, got, want in (("env", env, p.env), ("secret env", secrets, p.secret_env), ("mounts", mounts, p.mounts)):
            if got != want:
                found.append(f"{where}: {what} {got} != topology {role} {want}")
        if doc["kind"] in RAY:  # KubeRay runs `ray start`; the process is the job or the serve app
            if "command" in c or "args" in c:
                found.append(f"{where}: a Ray container's command is KubeRay's")
            if doc["kind"] == "RayJob" and shlex.split(doc["spec"]["entrypoint"]) != p.command:
                found.append(f"{where}: entrypoint {doc['spec']['entrypoint']!r} != topology {p.command}")
            if doc["kind"] == "RayService":
                app = yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]
                argv = ["serve", "run", app["import_path"], *(f"{k}={v}" for k, v in app.get("args", {}).items())]
                if argv != p.command:
                    found.append(f"{where}: serve app {argv} != topology {p.command}")
            continue
        if c.get("command") != p.command or "args" in c:
            found.append(f"{where}: command {c.get('command')} args {c.get('args')} != topology {p.command}")
        ports = [port["containerPort"] for port in c.get("ports", [])]
        if ports != [p.port]:
            found.append(f"{where}: ports {ports} != topology {p.port}")
        ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
        if (ready, live) != (p.health_path, p.live_path):
            found.append(f"{where}: probes {ready}, {live} != topology {p.health_path}, {p.live_path}")
    return found


def walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


# (a) the committed files are the render ------------------------------------------------------

def test_committed_manifests_are_what_the_topology_renders() -> None:
    problems = dr.check(K8S, dr.render())
    assert not problems, "\n".join(problems) + f"\ndeploy/k8s is generated: run `{RENDER}` and commit the result"


def test_the_check_sees_a_hand_edit_and_a_stray_file(tmp_path: Path) -> None:
    files = dr.render()
    dr.write(tmp_path, files)
    assert dr.check(tmp_path, files) == []
    gateway = tmp_path / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("replicas: 2", "replicas: 3"))
    (tmp_path / "extra.yaml").write_text("kind: ConfigMap\n")
    assert dr.check(tmp_path, files) == [f"{gateway}: differs from what the topology renders",
                                         f"{tmp_path / 'extra.yaml'}: not rendered from the topology"]
    assert os.stat(tmp_path / "secrets.sh").st_mode & stat.S_IXUSR


def test_the_cli_renders_the_committed_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lorafleet.platform.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["deploy", "render", "--out", str(K8S), "--check"]).exit_code == 0
    result = runner.invoke(app, ["deploy", "render", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {p.name: p.read_text() for p in K8S.iterdir()}
    (tmp_path / "redis.yaml").unlink()
    result = runner.invoke(app, ["deploy", "render", "--out", str(tmp_path), "--check"])
    assert result.exit_code == 1 and "redis.yaml: missing" in result.output


# (b) every container is its topology process -----------------------------------------------

def test_every_container_is_the_topology_process_of_its_role() -> None:
    docs = committed()
    assert {role for _, role, _, _ in containers(docs)} == ROLES
    assert differences(docs, t.KUBERNETES) == []


def test_the_comparison_reports_a_changed_env_value_command_and_mount() -> None:
    docs = parse(dr.render())
    gateway = next(c for _, role, c, _ in containers(docs) if role == "gateway")
    next(e for e in gateway["env"] if e["name"] == "LORAFLEET_ROUTES_SOURCE")["value"] = "/tmp/routes.yaml"
    engine = next(c for _, role, c, _ in containers(docs) if role == "engine")
    engine["command"] = [a for a in engine["command"] if a != "--base"]
    engine["volumeMounts"][0]["mountPath"] = "/elsewhere"
    found = differences(docs, t.KUBERNETES)
    assert len(found) == 3, found
    assert "LORAFLEET_ROUTES_SOURCE': '/tmp/routes.yaml'" in found[0] and found[0].startswith("gateway.yaml/gateway: env")
    assert any("vllm-engines.yaml/engine: command" in f for f in found)
    assert any("vllm-engines.yaml/engine: mounts" in f and "/elsewhere" in f for f in found)


def test_a_changed_topology_shows_in_the_comparison() -> None:
    other = replace(t.KUBERNETES, redis_url="redis://lorafleet-redis:6380/0")
    found = differences(committed(), other)
    assert any("gateway" in f and "LORAFLEET_RATE_LIMIT_STORAGE" in f for f in found)
    assert any("redis.yaml/redis: command" in f for f in found)


def test_addresses_in_the_topology_name_the_services_that_serve_them() -> None:
    docs = committed()
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for _, d in docs}
    sts = by_kind_name[("StatefulSet", dr.ENGINES)]
    service = by_kind_name[("Service", sts["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per engine pod
    pods = {f"http://{dr.ENGINES}-{i}.{service['metadata']['name']}:{t.engine(t.KUBERNETES).port}"
            for i in range(sts["spec"]["replicas"])}
    assert set(t.KUBERNETES.engine_urls) == pods
    redis = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", t.KUBERNETES.redis_url)
    redis_service = by_kind_name[("Service", redis[1])]
    assert redis_service["spec"]["ports"][0]["port"] == int(redis[2]) == t.redis(t.KUBERNETES).port
    gateway = t.gateway(t.KUBERNETES)
    keys_mount = next(path for path, vol in gateway.mounts.items() if vol == "keys")
    assert Path(gateway.env["LORAFLEET_KEYS_FILE"]).parent == Path(keys_mount)


def test_rayserve_gateways_front_the_rayservice_serve_service() -> None:
    fleet = dr.rayserve_engines()
    docs = parse(dr.render(fleet))
    gateway = next(c for _, role, c, _ in containers(docs) if role == "gateway")
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["LORAFLEET_ENGINE_KIND"] == "rayserve"
    service = next(d for _, d in docs if d["kind"] == "RayService")["metadata"]["name"]
    port = t.rayserve(fleet).port
    assert gateway["command"][gateway["command"].index("--engine-url") + 1] == f"http://{service}-serve-svc:{port}"
    assert differences(docs, fleet) == []


def test_configmap_routes_are_a_folder_mount_the_gateway_reads() -> None:
    fleet = dr.configmap_routes()
    docs = parse(dr.render(fleet))
    deployment = next(d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == dr.GATEWAY)
    pod = deployment["spec"]["template"]["spec"]
    gateway = pod["containers"][0]
    source = next(e["value"] for e in gateway["env"] if e["name"] == "LORAFLEET_ROUTES_SOURCE")
    mount = next(m for m in gateway["volumeMounts"] if m["name"] == "routes")
    assert Path(source).parent == Path(mount["mountPath"]) and "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == "routes")
    assert volume["configMap"]["name"] == dr.ROUTES_CONFIGMAP
    assert differences(docs, fleet) == []


# (c) no subPath, (d) secrets ----------------------------------------------------------------

def test_no_mount_uses_subpath() -> None:
    for name, doc in committed():
        assert [p for p, key, _ in walk(doc) if key in {"subPath", "subPathExpr"}] == [], name
    for p in t.processes(t.KUBERNETES).values():  # folders, never one file
        assert all(not Path(path).suffix for path in p.mounts), p.mounts


def test_every_secret_comes_from_a_secret_key_ref() -> None:
    secret_vars = {v for p in t.processes(t.KUBERNETES).values() for v in p.secret_env}
    assert secret_vars >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LORAFLEET_ENGINE_API_KEY"}
    for where, _, c, _ in containers(committed()):
        for e in c.get("env", []):
            if e["name"] in secret_vars or re.search(r"KEY|SECRET|TOKEN|PASSWORD", e["name"]) and e["name"] != "LORAFLEET_KEYS_FILE":
                assert set(e) == {"name", "valueFrom"} and set(e["valueFrom"]) == {"secretKeyRef"}, (where, e)
            else:
                assert set(e) == {"name", "value"}, (where, e)
    kinds = {d["kind"] for _, d in committed()}
    assert "Secret" not in kinds  # values are never committed: secrets.sh creates them


def _referenced_secrets(docs) -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for _, doc in docs:
        for _, key, value in walk(doc):
            if key == "secretKeyRef":
                refs.setdefault(value["name"], set()).add(value["key"])
            if key == "secret" and isinstance(value, dict) and "secretName" in value:
                refs.setdefault(value["secretName"], set())
    return refs


def test_secrets_script_creates_every_referenced_secret_from_the_environment(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (Debian's kubernetes-client) renders the script's Secrets offline")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    applied = tmp_path / "applied.yaml"
    # `kubectl create ... --dry-run=client` is the real one (offline); `kubectl apply -f -` records
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\nif [ "$1" = apply ]; then cat >> {applied}; echo --- >> {applied}; '
                                     f'else exec {kubectl} "$@"; fi\n')
    (bin_dir / "kubectl").chmod(0o755)
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys: []\n")
    values = {"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "s3cret/with+chars",
              "LORAFLEET_ENGINE_API_KEY": "engine-key-123"}
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "LORAFLEET_KEYS_FILE": str(keys),
           "KUBECONFIG": str(tmp_path / "none")}
    missing = subprocess.run(["bash", str(K8S / "secrets.sh")], check=False, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "set AWS_ACCESS_KEY_ID" in missing.stderr and not applied.exists()
    done = subprocess.run(["bash", str(K8S / "secrets.sh")], check=False, env={**env, **values}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import base64

    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(applied.read_text()) if d}
    want = _referenced_secrets(committed())
    assert {n: set(s["data"]) >= keys_ for n, (s, keys_) in
            ((n, (secrets[n], k)) for n, k in want.items())} == dict.fromkeys(want, True)
    decoded = {(n, k): base64.b64decode(v).decode() for n, s in secrets.items() for k, v in s["data"].items()}
    for var, (secret, key) in t.engine(t.KUBERNETES).secret_env.items():
        assert decoded[(secret, key)] == values[var]
    keys_key = Path(t.KUBERNETES.keys_file).name
    assert decoded[(t.KEYS_SECRET, keys_key)] == keys.read_text()
    text = (K8S / "secrets.sh").read_text()
    assert not any(v in text for v in values.values())
    for s in secrets.values():
        pytest.importorskip("kubernetes_validate").validate(s, K8S_VERSION, strict=True)


# (e) schemas ------------------------------------------------------------------------------

def _pod(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": template["spec"]}


@pytest.mark.parametrize("variant", ["committed", "rayserve", "configmap"])
def test_every_object_validates_strictly(variant: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = {"committed": committed, "rayserve": lambda: parse(dr.render(dr.rayserve_engines())),
            "configmap": lambda: parse(dr.render(dr.configmap_routes()))}[variant]()
    kinds = {d["kind"] for _, d in docs}
    assert kinds == CORE | RAY | {"ServiceMonitor"}
    for name, doc in docs:
        if doc["kind"] in CORE:
            kv.validate(doc, K8S_VERSION, strict=True)
        elif doc["kind"] in RAY:
            assert doc["apiVersion"] == "ray.io/v1", name
            cluster = ray_cluster(doc)
            assert cluster["rayVersion"] == dr.RAY_VERSION
            for tpl in [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]:
                kv.validate(_pod(tpl), K8S_VERSION, strict=True)


def test_ray_version_is_the_cpu_extras_pin() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cpu"]
    assert f"ray[train,serve]=={dr.RAY_VERSION}" in extras


def test_service_monitor_selects_services_that_exist() -> None:
    docs = committed()
    services = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Service"}
    monitor = next(d for _, d in docs if d["kind"] == "ServiceMonitor")
    wanted = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    assert wanted == {dr.GATEWAY, dr.ENGINES} and wanted <= set(services)
    for name in wanted:
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in services[name]["spec"]["ports"]}


def _policy_for(name: str) -> dict:
    return next(d for _, d in committed() if d["kind"] == "NetworkPolicy"
                and d["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": name})


def test_redis_admits_only_the_gateways() -> None:
    policy = _policy_for(dr.REDIS)
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": dr.GATEWAY}}}]


def test_engines_admit_only_the_gateways_and_prometheus_on_their_port() -> None:
    """vLLM's --api-key leaves /tokenize, /metrics and /health open: the network keeps others out."""
    policy = _policy_for(dr.ENGINES)
    (rule,) = policy["spec"]["ingress"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert rule["from"][0] == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": dr.GATEWAY}}}
    assert rule["from"][1]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    engine_port = next(p["port"] for _, d in committed() if d["kind"] == "Service" and d["metadata"]["name"] == dr.ENGINES
                       for p in d["spec"]["ports"])
    assert rule["ports"] == [{"protocol": "TCP", "port": engine_port}]


# (f) Ray: no dashboard without the token ----------------------------------------------------

def test_no_ray_port_answers_without_the_token() -> None:
    docs = committed()
    for name, doc in docs:
        if doc["kind"] == "Service":
            assert all(p["port"] != 8265 and p.get("targetPort") not in (8265, "dashboard")
                       for p in doc["spec"]["ports"]), name
        if doc["kind"] in RAY:
            cluster = ray_cluster(doc)
            # KubeRay then gives every Ray container the token: dashboard, GCS and Ray Client refuse others
            assert cluster.get("authOptions") == {"mode": "token"}, name
            head = cluster["headGroupSpec"]
            host = head["rayStartParams"].get("dashboard-host")
            ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0].get("ports", [])}
            if doc["kind"] == "RayCluster":  # nothing outside the pod needs it: loopback, no head Service port
                assert host == "127.0.0.1" and 8265 not in ports, name
            else:  # KubeRay's controllers submit and follow jobs and serve apps through it, with the token
                assert host == "0.0.0.0" and 8265 in ports, name


# (g) engines' vLLM endpoints are protected --------------------------------------------------

def test_engines_cannot_run_without_the_engine_api_key() -> None:
    loopback = t.Fleet(registry_url="s3://b/p", s3_endpoint_url="http://127.0.0.1:9", redis_url="redis://127.0.0.1:7/0",
                       engine_urls=["http://127.0.0.1:8001"], engine_host="127.0.0.1", home="/tmp/h")
    for fleet in (t.KUBERNETES, loopback):
        assert "LORAFLEET_ENGINE_API_KEY" in t.engine(fleet).secret_env
        assert t.engine(fleet).secret_env == {k: v for k, v in t.gateway(fleet).secret_env.items()
                                              if k == "LORAFLEET_ENGINE_API_KEY"} | t.S3_CREDENTIALS
    from lorafleet.platform.engine_run import resolver_engine

    host = t.engine(t.KUBERNETES).command[t.engine(t.KUBERNETES).command.index("--host") + 1]
    with pytest.raises(InputError, match="LORAFLEET_ENGINE_API_KEY"):
        resolver_engine(Settings(home=Path("/nonexistent"), engine_api_key=None), t.KUBERNETES.base, host, 8000)


def test_a_test_fleet_differs_from_the_cluster_only_in_addresses_and_paths() -> None:
    loopback = t.Fleet(registry_url="s3://b/p", s3_endpoint_url="http://127.0.0.1:9", redis_url="redis://127.0.0.1:7/0",
                       engine_urls=["http://127.0.0.1:8001", "http://127.0.0.1:8002"], gateway_host="127.0.0.1", engine_host="127.0.0.1",
                       redis_host="127.0.0.1", keys_file="/tmp/k/keys.yaml", home="/tmp/h")
    here, there = t.processes(loopback), t.processes(t.KUBERNETES)
    for role in ROLES:
        assert set(here[role].env) == set(there[role].env), role
        assert here[role].secret_env == there[role].secret_env, role
        flags = [a for a in here[role].command if a.startswith("-")]
        assert flags == [a for a in there[role].command if a.startswith("-")], role
        assert here[role].command[:2] == there[role].command[:2], role
