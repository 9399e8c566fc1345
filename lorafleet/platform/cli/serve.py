"""`platform serve` and `platform stop`."""

from __future__ import annotations

from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["serve", "stop"]


def serve(
    base: Annotated[str | None, typer.Option(help="Base model (default: the settings' default base).")] = None,
    host: Annotated[str, typer.Option(help="Gateway bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
    engine_url: Annotated[
        list[str] | None,
        typer.Option("--engine-url", help="Attach to a running vLLM server instead of starting one (repeatable)."),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background (logs and pid file in the home).")] = False,
    embedding_drift: Annotated[bool, typer.Option(
        "--embedding-drift",
        help="Also export embedding drift: 1 in 10 prompts embedded with the offline MiniLM on a background "
             "thread, compared with each version's training centroid (LORAFLEET_GATEWAY_EMBEDDING_DRIFT).",
    )] = False,
    restart_unhealthy_after_s: Annotated[float | None, typer.Option(
        help="Restart the local engine when it is alive but its /health has not answered for this many "
             "seconds (a hung engine); 0: only restart an engine that exits. Default 25.",
    )] = None,
    canary_analysis: Annotated[bool, typer.Option(
        "--canary-analysis",
        help="Also run automatic canary analysis on every route with a canary (as `platform canary watch`).",
    )] = False,
) -> None:
    """Serve the base and its adapters through the OpenAI-compatible gateway.

    Starts a supervised vLLM engine (restarted with backoff if it dies or hangs; it dies with
    the server) unless --engine-url is given. With no keys file (`platform keys add`) the
    gateway is open, so it binds loopback addresses only. The routes file in the home
    decides which adapter version gets which traffic; edits to it apply within a second. With --canary-analysis every canary is judged
    against its stable version each interval (the route's `analysis:` block) and stepped up,
    promoted or rolled back by one routes-file change.
    """
    from lorafleet.core.names import check_name
    from lorafleet.serving.server import serve_detached, serve_foreground, supervisor_config

    from lorafleet.core.errors import InputError

    if embedding_drift:  # through the environment, so a detached server process gets it too
        import os

        from lorafleet.embedding.minilm import PACKAGE, embedding_available

        if not embedding_available():
            raise InputError("--embedding-drift", True, f"needs the {PACKAGE} package, which is not installed")
        os.environ["LORAFLEET_GATEWAY_EMBEDDING_DRIFT"] = "true"
    settings = get_settings()
    base = check_name(base or settings.default_base, "--base")
    urls = engine_url or []
    supervisor = supervisor_config(restart_unhealthy_after_s)
    if detach:
        module = "lorafleet.platform.control.serve_main" if canary_analysis else "lorafleet.serving.server"
        record = serve_detached(settings, base, host, port, urls, module=module, supervisor=supervisor)
        typer.echo(f"serving at {record['url']} (pid {record['pid']}, log {record['log']}); stop with `platform stop`")
        return
    if canary_analysis:
        from lorafleet.platform.control.serve_main import serve_with_analysis

        serve_with_analysis(settings, base, host, port, urls, supervisor=supervisor)
        return
    serve_foreground(settings, base, host, port, urls, supervisor=supervisor)


def stop() -> None:
    """Stop what `platform serve --detach` started (gateway and engine)."""
    from lorafleet.serving.server import stop_detached

    record = stop_detached(get_settings())
    typer.echo(f"stopped the server at {record['url']} (pid {record['pid']})" if record else "nothing to stop")
