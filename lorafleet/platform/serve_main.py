"""Entry point of `platform serve --canary-analysis` in the background: the gateway (and its
supervised engine) plus the automatic canary analysis loop, in one process that `platform stop`
stops. Takes the same arguments as ``python -m lorafleet.serving.server``.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from lorafleet.core.settings import get_settings
    from lorafleet.platform.analysis import AnalysisLoop
    from lorafleet.serving.server import local_url, parse_args, serve_foreground

    args = parse_args(argv)
    settings = get_settings()
    loop = AnalysisLoop.for_home(settings, args.base, local_url(args.host, args.port)).start()
    try:
        serve_foreground(settings, args.base, args.host, args.port, args.engine_url)
    finally:
        loop.stop(timeout_s=2.0)


if __name__ == "__main__":
    main()
