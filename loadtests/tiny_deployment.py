"""A throw-away deployment on the tiny random base, for load runs when no server is running.

In a temporary platform home: the tiny Llama (the test suite's model) as base ``tiny-llama``,
three random LoRA versions pushed to the registry, and a routes file shaped like the
quickstart's plus one more route:

  support-intents: stable support-intents@1, 5% canary support-intents@2, the example's
                   JSON schema (validator: validate)
  faq:             stable faq@1
  tiny-llama:      the base model, under its own name

then a real vLLM engine on that base and the real gateway (uvicorn in a thread) on a free
loopback port. The answers are gibberish (random weights); the traffic, routing, canary
split, streaming and metrics are the real ones. Everything is stopped and removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["tiny_deployment", "TINY_BASE"]

TINY_BASE = "tiny-llama"
REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "examples" / "support-intents" / "schema.json"


def _serve_in_thread(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    return server, thread


@contextlib.contextmanager
def tiny_deployment(say=print, canary_percent: float = 5.0, keep: bool = False) -> Iterator[str]:
    """Build and serve the tiny deployment; yield the gateway's root URL (``http://127.0.0.1:PORT``)."""
    home = Path(tempfile.mkdtemp(prefix="lorafleet-loadtest-"))
    old_home = os.environ.get("LORAFLEET_HOME")
    os.environ["LORAFLEET_HOME"] = str(home)
    engine = server = thread = None
    try:
        from lorafleet.core.settings import get_settings
        from lorafleet.platform.base_pull import pull_base
        from tests.tiny import build_tiny_llama, make_random_lora
        from lorafleet.registry import open_registry
        from lorafleet.engine import EngineConfig, LocalEngine, free_port
        from lorafleet.serving.gateway import create_app
        from lorafleet.serving.routes import RoutesFile
        from lorafleet.serving.server import build_gateway
        from lorafleet.engine.process import answers_ok

        settings = get_settings()
        t0 = time.perf_counter()
        say(f"tiny deployment in {home}: building the tiny base and 3 adapter versions")
        base, _ = pull_base(settings, TINY_BASE, build_tiny_llama(home / "src-tiny"))
        reg = open_registry(settings)
        base_dir = settings.layout.base(TINY_BASE)
        refs = {}
        for name, seed in (("support-intents", 1), ("support-intents", 2), ("faq", 3)):
            refs.setdefault(name, []).append(
                reg.push(make_random_lora(base_dir, home / f"src-{name}-{seed}", r=8, seed=seed), name, base).ref)
        RoutesFile.from_mapping({"routes": {
            "support-intents": {"stable": refs["support-intents"][0], "schema": str(SCHEMA), "validator": "validate",
                                "canary": {"version": refs["support-intents"][1], "weight": canary_percent}},
            "faq": {"stable": refs["faq"][0]},
        }}).save(settings.layout.routes_file)
        engine = LocalEngine(EngineConfig.from_settings(settings, base_dir, TINY_BASE,
                                                        log_path=settings.layout.logs / "engine.log"))
        say(f"starting vLLM on {TINY_BASE} (log {settings.layout.logs / 'engine.log'})")
        engine.start()
        port = free_port()
        server, thread = _serve_in_thread(create_app(build_gateway(settings, TINY_BASE, [engine.root_url])), port)
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not answers_ok(f"{root}/readyz"):
            if time.monotonic() > deadline:
                raise RuntimeError("the tiny deployment's gateway did not become ready")
            time.sleep(0.2)
        say(f"tiny deployment ready in {time.perf_counter() - t0:.0f}s: gateway {root}/v1")
        yield root
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(timeout=10)
        if engine is not None:
            engine.stop()
        if old_home is None:
            os.environ.pop("LORAFLEET_HOME", None)
        else:
            os.environ["LORAFLEET_HOME"] = old_home
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
