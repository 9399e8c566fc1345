"""`platform serve`: a supervised local vLLM engine (or attached engines) plus the gateway.

Run in the foreground, or detached: a background process with its log in
``$HOME/logs/serve.log`` and a pid file in ``$HOME/run/serve.json`` that `platform stop` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from lorafleet.core.fsutil import atomic_write_text
from lorafleet.core.settings import Settings, get_settings
from lorafleet.serving.drift import psi, reference_centroid, reference_histograms
from lorafleet.serving.errors import ServingError
from lorafleet.serving.gateway import Gateway, GatewayConfig, create_app
from lorafleet.engine.process import answers_ok

__all__ = ["build_gateway", "serve_foreground", "serve_detached", "stop_detached", "PID_FILE"]

PID_FILE = "serve.json"
log = logging.getLogger("lorafleet.serve")


def build_gateway(settings: Settings, base: str, engine_urls: list[str], routes_file: Path | None = None,
                  keys_file: Path | None = None, **config_overrides) -> Gateway:
    """A gateway whose adapters come from the registry and are checked against ``base``.

    ``keys_file`` defaults to ``$HOME/keys.yaml`` when that exists (else the gateway runs open).
    """
    from lorafleet.registry import check_compatibility, open_registry
    from lorafleet.registry.bases import BaseStore

    registry = open_registry(settings)
    base_manifest = BaseStore(settings.layout.bases).get(base)
    if base_manifest is None:
        log.warning("base %s is not in %s: adapters are not checked against it", base, settings.layout.bases)

    def materialize(version: str) -> Path:
        path = registry.materialize(version)
        if base_manifest is not None:
            check_compatibility(path, base_manifest, max_lora_rank=settings.engine_max_lora_rank)
        return path

    async def resolve_path(version: str) -> Path:
        return await asyncio.to_thread(materialize, version)

    def check_version(version: str) -> None:
        registry.resolve(version)

    async def reference(version: str) -> dict | None:
        manifest = await asyncio.to_thread(registry.resolve, version)
        return reference_histograms(getattr(manifest, "fingerprint", None))

    async def centroid(version: str) -> list[float] | None:
        manifest = await asyncio.to_thread(registry.resolve, version)
        return reference_centroid(getattr(manifest, "fingerprint", None))

    if keys_file is None and settings.layout.keys_file.exists():
        keys_file = settings.layout.keys_file
    config = GatewayConfig(
        engine_urls=engine_urls,
        routes_file=routes_file or settings.layout.routes_file,
        keys_file=keys_file,
        max_loaded_adapters=settings.engine_max_cpu_loras,
        **{"embedding_drift": settings.gateway_embedding_drift, **config_overrides},
    )
    tokenizer = settings.layout.base(base) / "tokenizer.json"
    return Gateway(config, resolve_path, check_version, base_name=base, reference=reference, psi=psi,
                   tokenizer_json=tokenizer if tokenizer.is_file() else None, centroid=centroid)


def serve_foreground(settings: Settings, base: str, host: str, port: int, engine_urls: list[str]) -> None:
    """Start (and supervise) a local engine unless engine URLs are given, then run the gateway."""
    import uvicorn

    from lorafleet.registry.bases import BaseStore
    from lorafleet.engine.vllm import EngineConfig, LocalEngine
    from lorafleet.engine.supervisor import EngineSupervisor

    supervisor = None
    if not engine_urls:
        BaseStore(settings.layout.bases).require(base)
        config = EngineConfig.from_settings(settings, settings.layout.base(base), base,
                                            log_path=settings.layout.logs / "engine.log")
        supervisor = EngineSupervisor(LocalEngine(config))
        log.info("starting vLLM on %s (log: %s)", base, config.log_path)
        supervisor.start()
        engine_urls = [supervisor.engine.root_url]
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit so the
    # engine below is stopped too instead of being orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        app = create_app(build_gateway(settings, base, engine_urls))
        log.info("gateway on http://%s:%d/v1 -> %s", host, port, ", ".join(engine_urls))
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if supervisor is not None:
            supervisor.stop()


def serve_detached(settings: Settings, base: str, host: str, port: int, engine_urls: list[str],
                   wait_s: float | None = None, module: str = "lorafleet.serving.server") -> dict:
    """Run the server in the background; return its pid-file record once it is ready.

    ``module`` is the process' entry point: this module's ``main`` or one that wraps it and
    takes the same arguments (the control plane's, to run canary analysis beside the gateway).
    """
    run_dir, logs = settings.layout.run, settings.layout.logs
    pid_file = run_dir / PID_FILE
    existing = read_pid_file(settings)
    if existing is not None:
        raise ServingError(f"already serving at {existing['url']} (pid {existing['pid']}); run `platform stop` first")
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "serve.log"
    args = [sys.executable, "-m", module, "--base", base, "--host", host, "--port", str(port)]
    for url in engine_urls:
        args += ["--engine-url", url]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    record = {"pid": proc.pid, "url": f"http://{host}:{port}/v1", "log": str(log_path), "base": base}
    atomic_write_text(pid_file, json.dumps(record))
    deadline = time.monotonic() + (wait_s or settings.engine_start_timeout_s + 60)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise ServingError(f"the server exited during start-up (code {proc.returncode}); see {log_path}")
        if answers_ok(f"http://{host}:{port}/readyz"):
            return record
        time.sleep(0.5)
    stop_detached(settings)
    raise ServingError(f"the server was not ready in time; see {log_path}")


def read_pid_file(settings: Settings) -> dict | None:
    """The running background server's record, or None (a stale file is removed)."""
    pid_file = settings.layout.run / PID_FILE
    if not pid_file.is_file():
        return None
    record = json.loads(pid_file.read_text())
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return None
    return record


def stop_detached(settings: Settings, timeout_s: float = 30.0) -> dict | None:
    """Stop the background server (gateway and its engine); None if nothing was running."""
    record = read_pid_file(settings)
    if record is None:
        return None
    from lorafleet.engine.process import end_process_group

    end_process_group(record["pid"], grace_s=timeout_s)
    (settings.layout.run / PID_FILE).unlink(missing_ok=True)
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The background process' arguments (set up its logging too)."""
    parser = argparse.ArgumentParser(description="lorafleet server (used by `platform serve --detach`)")
    parser.add_argument("--base", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--engine-url", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per engine call is noise
    return args


def local_url(host: str, port: int) -> str:
    """The gateway's root URL as seen from this machine."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    serve_foreground(get_settings(), args.base, args.host, args.port, args.engine_url)


if __name__ == "__main__":
    main()
