"""Entry point of `platform serve --canary-analysis` in the background: the gateway (and its
supervised engine) plus the automatic canary analysis loop, in one process that `platform stop`
stops. Takes the same arguments as ``python -m lorafleet.serving.server``.
"""

from __future__ import annotations

__all__ = ["main", "serve_with_analysis"]


def serve_with_analysis(settings, base: str, host: str, port: int, engine_urls: list[str]) -> None:
    """`platform serve` in the foreground with the canary analysis loop beside the gateway."""
    from lorafleet.platform.control.analysis import AnalysisLoop
    from lorafleet.serving.server import local_url, serve_foreground

    loop = AnalysisLoop.for_home(settings, base, local_url(host, port)).start()
    try:
        serve_foreground(settings, base, host, port, engine_urls)
    finally:
        loop.stop(timeout_s=2.0)


def main(argv: list[str] | None = None) -> None:
    from lorafleet.core.settings import get_settings
    from lorafleet.serving.server import parse_args

    args = parse_args(argv)
    serve_with_analysis(get_settings(), args.base, args.host, args.port, args.engine_url)


if __name__ == "__main__":
    main()
