"""`platform serve`: a supervised local vLLM engine (or attached engines) plus the gateway.

Run in the foreground, or detached: a background process with its log in
``$HOME/logs/serve.log`` and a pid file in ``$HOME/run/serve.json`` that `platform stop` reads.
Every entry point (the CLI, ``python -m lorafleet.serving.server``, the control plane's
wrapper) goes through :func:`check_bind`: with no keys file the gateway is open (every caller
is trusted), so it binds loopback only. The supervised engine dies with this process, and when
the supervisor restarts it on a new port the gateway's engine pool is told on its own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING


from lorafleet.core.errors import InputError, LorafleetError
from lorafleet.core.fsutil import atomic_write_text
from lorafleet.core.settings import Settings, get_settings
from lorafleet.serving.drift import psi, reference_centroid, reference_histograms
from lorafleet.serving.errors import ServingError
from lorafleet.serving.gateway import Gateway, GatewayConfig, uvicorn_config
from lorafleet.engine.process import answers_ok
from lorafleet.serving.pidfile import PID_FILE, is_loopback, read_pid_file

if TYPE_CHECKING:
    from lorafleet.engine.supervisor import SupervisorConfig

__all__ = ["build_gateway", "check_bind", "check_port_free", "is_loopback", "supervisor_config", "serve_foreground",
           "serve_detached", "stop_detached", "PID_FILE"]

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

    if keys_file is None and settings.keys_path.exists():
        keys_file = settings.keys_path
    config = GatewayConfig(
        engine_urls=engine_urls,
        routes_file=routes_file,
        keys_file=keys_file,
        max_loaded_adapters=settings.engine_max_cpu_loras,
        adapter_loading=settings.adapter_loading,
        engine_kind=settings.engine_kind,
        engine_api_key=settings.engine_api_key,
        rate_limit_storage=settings.rate_limit_storage,
        **{"embedding_drift": settings.gateway_embedding_drift, **config_overrides},
    )
    tokenizer = settings.layout.base(base) / "tokenizer.json"
    source = None
    if routes_file is None:
        from lorafleet.serving.routes_source import open_routes

        source = open_routes(settings)
    return Gateway(config, resolve_path, check_version, base_name=base, reference=reference, psi=psi,
                   tokenizer_json=tokenizer if tokenizer.is_file() else None, centroid=centroid,
                   routes_source=source)


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to bind an open gateway (no keys file) beyond loopback: with no keys every caller
    is trusted. The one check every entry point goes through; raises InputError naming --host."""
    if not is_loopback(host) and not settings.keys_path.exists():
        raise InputError("--host", host, f"with no keys file ({settings.keys_path}) the gateway runs open, "
                                         "so only on loopback; create keys with `platform keys add TENANT` first")


def check_port_free(host: str, port: int) -> None:
    """An InputError naming --port when something already listens there (before minutes of engine start-up)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway's server binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise InputError("--port", port, f"{host}:{port} is in use ({exc.strerror}); pick another port "
                                             "or stop what listens there (`platform stop`)") from exc


def follow_engine_restarts(loop: asyncio.AbstractEventLoop, gateway: Gateway):
    """An ``on_restart(old_root_url, new_root_url)`` for the engine supervisor (it calls from its own
    thread) that moves the gateway's engine pool to the new URL on the gateway's event loop."""

    def apply(old_url: str, new_url: str) -> None:
        replace = getattr(gateway.pool, "replace_url", None)
        if replace is None:
            log.error("this gateway's engine pool cannot move %s to %s: restart the gateway", old_url, new_url)
            return
        try:
            result = replace(old_url, new_url)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except ValueError as err:  # an URL the pool does not know: nothing to move
            log.error("gateway: cannot move engine %s to %s: %s", old_url, new_url, err)
            return
        log.warning("gateway: engine %s is now %s", old_url, new_url)

    def on_restart(old_url: str, new_url: str) -> None:
        loop.call_soon_threadsafe(apply, old_url, new_url)

    return on_restart


def supervisor_config(restart_unhealthy_after_s: float | None = None) -> SupervisorConfig:
    """The engine supervisor's config from ``--restart-unhealthy-after-s`` (None: its default; 0: never
    restart a hung engine, only one that exits)."""
    from lorafleet.engine.supervisor import SupervisorConfig

    if restart_unhealthy_after_s is None:
        return SupervisorConfig()
    if restart_unhealthy_after_s < 0:
        raise InputError("--restart-unhealthy-after-s", restart_unhealthy_after_s, "must be >= 0 (0: never)")
    return SupervisorConfig(restart_unhealthy_after_s=restart_unhealthy_after_s or None)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve_foreground(settings: Settings, base: str, host: str, port: int, engine_urls: list[str],
                     supervisor: SupervisorConfig | None = None) -> None:
    """Start (and supervise, per ``supervisor``) a local engine unless engine URLs are given, then run
    the gateway."""
    import uvicorn

    from lorafleet.registry.bases import BaseStore
    from lorafleet.engine.vllm import EngineConfig, LocalEngine
    from lorafleet.engine.supervisor import EngineSupervisor

    check_bind(settings, host)
    _configure_logging()  # INFO: loads, unloads, engine health, routes reloads (a no-op where logging is set up)
    supervisor_cfg, supervisor = supervisor, None
    if not engine_urls:
        BaseStore(settings.layout.bases).require(base)
        config = EngineConfig.from_settings(settings, settings.layout.base(base), base,
                                            log_path=settings.layout.logs / "engine.log")
        supervisor = EngineSupervisor(LocalEngine(config), config=supervisor_cfg)
        log.info("starting vLLM on %s (log: %s)", base, config.log_path)
        supervisor.start()
        engine_urls = [supervisor.engine.root_url]
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit so the
    # engine below is stopped too instead of being orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        gateway = build_gateway(settings, base, engine_urls)
        config = uvicorn_config(gateway, host, port)
        server = uvicorn.Server(config)

        async def serve() -> None:
            if supervisor is not None:  # restarts on a new port reach the pool on this loop
                supervisor.on_restart = follow_engine_restarts(asyncio.get_running_loop(), gateway)
            await server.serve()

        log.info("gateway on http://%s:%d/v1 -> %s", host, port, ", ".join(engine_urls))
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve())
        if not server.started:  # uvicorn logged why (the port is taken, say) and returned
            raise ServingError(f"the gateway could not listen on {host}:{port}")
    finally:
        if supervisor is not None:
            supervisor.stop()


def serve_detached(settings: Settings, base: str, host: str, port: int, engine_urls: list[str],
                   wait_s: float | None = None, module: str = "lorafleet.serving.server",
                   supervisor: SupervisorConfig | None = None) -> dict:
    """Run the server in the background; return its pid-file record once it is ready.

    ``module`` is the process' entry point: this module's ``main`` or one that wraps it and
    takes the same arguments (the control plane's, to run canary analysis beside the gateway).
    """
    check_bind(settings, host)  # here too, so the caller gets the one-line error, not a dead child
    run_dir, logs = settings.layout.run, settings.layout.logs
    pid_file = run_dir / PID_FILE
    existing = read_pid_file(settings)
    if existing is not None:
        raise ServingError(f"already serving at {existing['url']} (pid {existing['pid']}); run `platform stop` first")
    check_port_free(host, port)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "serve.log"
    args = [sys.executable, "-m", module, "--base", base, "--host", host, "--port", str(port)]
    for url in engine_urls:
        args += ["--engine-url", url]
    if supervisor is not None:
        args += ["--restart-unhealthy-after-s", str(supervisor.restart_unhealthy_after_s or 0)]
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
    parser.add_argument("--restart-unhealthy-after-s", type=float, default=None,
                        help="restart an engine whose /health has failed this long (0: never)")
    args = parser.parse_args(argv)
    _configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per engine call is noise
    return args


def local_url(host: str, port: int) -> str:
    """The gateway's root URL as seen from this machine."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def run_main(serve, argv: list[str] | None = None) -> None:
    """Run ``serve(settings, base, host, port, engine_urls)`` from the command line: a lorafleet
    error is one line on stderr and exit code 2, as in the CLI."""
    args = parse_args(argv)
    try:
        serve(get_settings(), args.base, args.host, args.port, args.engine_url,
              supervisor=supervisor_config(args.restart_unhealthy_after_s))
    except LorafleetError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    run_main(serve_foreground, argv)


if __name__ == "__main__":
    main()
