"""`make loadtest`'s script end to end, briefly: locust against a real gateway over the real
engine (tiny base), two adapter routes one with a canary, the base; no request may fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread

REPO = Path(__file__).resolve().parents[2]


def test_loadtest_runs_headless_and_reports(settings, engine, tiny_base, tmp_path: Path) -> None:
    from lorafleet.registry import open_registry

    reg = open_registry(settings)
    base_dir = settings.layout.base(TINY_BASE)
    stable, canary, other = (reg.push(make_lora_adapter(base_dir, tmp_path / f"a{seed}", r=8, seed=seed), name,
                                      tiny_base).ref for name, seed in (("lt-support", 1), ("lt-support", 2),
                                                                       ("lt-faq", 3)))
    routes = tmp_path / "routes.yaml"
    RoutesFile.from_mapping({"routes": {
        "lt-support": {"stable": stable, "canary": {"version": canary, "weight": 50},
                       "schema": str(REPO / "examples" / "support-intents" / "schema.json"), "validator": "validate"},
        "lt-faq": {"stable": other},
    }}).save(routes)
    out = tmp_path / "out"
    with GatewayThread(build_gateway(settings, TINY_BASE, [engine.root_url], routes)) as gw:
        r = subprocess.run([sys.executable, str(REPO / "loadtests" / "run.py"), "--url", gw.url, "-u", "4", "-r", "4",
                            "-t", "8s", "--wait", "0,0.2", "--out", str(out)],
                           capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    names = {t["name"] for t in summary["types"]}
    assert {"chat lt-support", "chat-stream lt-support", "chat lt-faq", f"completion {TINY_BASE}",
            f"completion-stream {TINY_BASE}"} <= names, names
    total = summary["total"]
    assert total["requests"] >= 10 and total["failures"] == 0, r.stdout[-3000:]
    assert total["locust_requests"] == total["requests"]
    (canary_row,) = summary["canary"]
    assert canary_row["route"] == "lt-support" and canary_row["configured_percent"] == 50
    assert 0 < canary_row["canary"] < canary_row["requests"]  # both variants served under a 50% split
    counted = summary["gateway_counts"]["lt-support"]
    assert counted.get("canary 200", 0) == canary_row["canary"]
    assert (out / "loadtest.png").read_bytes()[:4] == b"\x89PNG"
    assert "held" in r.stdout and "canary share of lt-support" in r.stdout
