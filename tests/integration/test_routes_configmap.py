"""A gateway whose routes are a Kubernetes ConfigMap mounted as a folder (no subPath): kubelet's
update (a new timestamped folder, then the ``..data`` symlink swapped in one rename) reaches the
running gateway within 2 s, a schema from the same ConfigMap is found beside the routes, and a
promote against the read-only mount is refused with exit code 2 naming kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lorafleet.serving.gateway import Gateway, GatewayConfig
from lorafleet.serving.routes_source import FileRoutes
from tests.integration.fake_engine import BASE, FakeEngine
from tests.integration.gateway_harness import GatewayThread

PLATFORM = str(Path(sys.executable).with_name("platform"))


def kubelet_update(folder: Path, files: dict[str, str], stamp: str) -> None:
    """What kubelet does on a ConfigMap change: write a new folder, swap ``..data`` to it atomically."""
    data = folder / f"..{stamp}"
    data.mkdir(parents=True)
    for name, text in files.items():
        (data / name).write_text(text)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def _canary(gw: GatewayThread) -> tuple[str | None, float]:
    models = {m["id"]: m for m in httpx.get(f"{gw.url}/models", timeout=5).json()["data"]}
    v = models["r"]["versions"]
    return v["canary"], v["canary_weight"]


def test_a_configmap_update_reaches_a_running_gateway_in_2_s(tmp_path: Path) -> None:
    folder = tmp_path / "etc-lorafleet-routes"
    schema = json.dumps({"type": "object"})
    kubelet_update(folder, {"routes.yaml": "routes:\n  r: {stable: fake@1, schema: schema.json, validator: enforce}\n",
                            "schema.json": schema}, "2026_12_02_10_00_00.1")
    with FakeEngine() as engine:
        config = GatewayConfig(engine_urls=[engine.root_url], routes_poll_interval_s=0.25)
        gateway = Gateway(config, resolve_path=None, base_name=BASE, routes_source=FileRoutes(folder / "routes.yaml"))
        with GatewayThread(gateway) as gw:
            assert _canary(gw) == (None, 0.0)
            kubelet_update(folder, {"routes.yaml": "routes:\n  r:\n    stable: fake@1\n    schema: schema.json\n"
                                                   "    validator: enforce\n    canary: {version: fake@2, weight: 25}\n",
                                    "schema.json": schema}, "2026_12_02_10_05_00.2")
            started = time.monotonic()
            while _canary(gw) != ("fake@2", 25.0) and time.monotonic() - started < 2.0:
                time.sleep(0.05)
            assert _canary(gw) == ("fake@2", 25.0), "the ..data swap did not reach the gateway within 2 s"
            assert gateway.watcher.last_error is None

    env = {**os.environ, "LORAFLEET_HOME": str(tmp_path / "home"),
           "LORAFLEET_ROUTES_SOURCE": str(folder / "routes.yaml")}
    done = subprocess.run([PLATFORM, "rollback", "r"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "kubectl" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "fake@2" in (folder / "routes.yaml").read_text()  # untouched


pytestmark = pytest.mark.integration
