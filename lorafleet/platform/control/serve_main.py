"""Entry point of `platform serve --canary-analysis` in the background: the gateway (and its
supervised engine) plus the automatic canary analysis loop, in one process that `platform stop`
stops. Takes the same arguments as ``python -m lorafleet.serving.server``.
"""

from __future__ import annotations

__all__ = ["main", "serve_with_analysis"]


def serve_with_analysis(settings, base: str, host: str, port: int, engine_urls: list[str],
                        supervisor=None) -> None:
    """`platform serve` in the foreground with the canary analysis loop beside the gateway."""
    from lorafleet.platform.control.analysis import AnalysisLoop
    from lorafleet.serving.server import check_bind, local_url, serve_foreground

    check_bind(settings, host)  # before the analysis loop starts (serve_foreground checks it too)
    loop = AnalysisLoop.for_home(settings, base, local_url(host, port)).start()
    try:
        serve_foreground(settings, base, host, port, engine_urls, supervisor=supervisor)
    finally:
        loop.stop(timeout_s=2.0)


def main(argv: list[str] | None = None) -> None:
    from lorafleet.serving.server import run_main

    run_main(serve_with_analysis, argv)


if __name__ == "__main__":
    main()
