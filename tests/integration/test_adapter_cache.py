"""The adapter cache is visible: a real gateway in front of the session's real vLLM engine, with
two adapter slots per engine (``LORAFLEET_ENGINE_MAX_CPU_LORAS=2``: the gateway's ``max_loaded_adapters``).

- four routes asked in turn (an active set twice the slots): every request misses, idle versions
  are unloaded to make room, and ``platform status --json`` shows the engine's hit rate, misses,
  unloads and slots with advice naming the setting to raise;
- then two routes only (the active set fits): over that window every request hits, nothing is
  unloaded and there is no advice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openai import OpenAI

from lorafleet.platform.control.observe import cache_figures, scrape
from lorafleet.registry import open_registry
from lorafleet.serving.routes import RoutesFile
from lorafleet.serving.server import build_gateway
from tests.conftest import TINY_BASE, make_lora_adapter
from tests.integration.gateway_harness import GatewayThread

PLATFORM = str(Path(sys.executable).parent / "platform")


def test_misses_and_evictions_are_counted_and_status_advises_more_slots(settings, engine, tiny_base,
                                                                         tmp_path) -> None:
    reg = open_registry(settings)
    refs = [reg.push(make_lora_adapter(settings.layout.base(TINY_BASE), tmp_path / f"a{i}", r=8, seed=40 + i),
                     "cache", tiny_base).ref for i in range(4)]
    routes_path = tmp_path / "routes.yaml"
    RoutesFile.from_mapping({"routes": {f"cache-{i}": {"stable": ref} for i, ref in enumerate(refs)}}).save(routes_path)
    two_slots = settings.model_copy(update={"engine_max_cpu_loras": 2})  # the gateway's max_loaded_adapters
    gateway = build_gateway(two_slots, TINY_BASE, [engine.root_url], routes_path)
    with GatewayThread(gateway) as gw:
        client = OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=120)

        def ask(route: str) -> None:
            r = client.completions.create(model=route, prompt="hi", max_tokens=1)
            assert r.choices[0].text is not None

        for n in range(12):  # cache-0..3 in turn over 2 slots: each request needs the version evicted longest ago
            ask(f"cache-{n % 4}")
        env = {**os.environ, "LORAFLEET_HOME": str(settings.home), "LORAFLEET_ROUTES_SOURCE": str(routes_path)}
        out = subprocess.run([PLATFORM, "status", "--json", "--gateway", gw.root_url], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        [row] = [r for r in json.loads(out.stdout)["adapter_cache"] if r["engine"] == engine.root_url]
        assert (row["adapter_requests"], row["misses"], row["slots"]) == (12, 12, 2), row
        # 10 evictions of its own (12 loads, 2 slots); more if the engine held other tests' versions at start
        assert row["hit_rate"] == 0.0 and row["unloads"] >= 10 and row["loaded"] == 2, row
        assert "LORAFLEET_ENGINE_MAX_CPU_LORAS" in row["advice"] and "2 slots" in row["advice"], row

        ask("cache-2")
        ask("cache-3")  # the last two asked are loaded already; from here on only they are asked
        before = scrape(gw.root_url)
        for n in range(10):
            ask(f"cache-{2 + n % 2}")
        [fits] = [f for f in cache_figures(scrape(gw.root_url), before) if f.engine == engine.root_url]
        assert (fits.hits, fits.misses, fits.unloads) == (10, 0, 0), fits
        assert fits.hit_rate == 1.0 and fits.advice() is None
