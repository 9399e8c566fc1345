"""`platform keys`: tenant API keys for the gateway (stored hashed in the home)."""

from __future__ import annotations

from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Tenant API keys for the gateway.", no_args_is_help=True)


@keys_app.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="Tenant name.")],
    routes: Annotated[str | None, typer.Option(help="Comma-separated routes it may call (default: all).")] = None,
    rate_limit_rps: Annotated[float | None, typer.Option(help="Requests per second per key.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make an admin key instead (admin endpoints, all routes).")] = False,
) -> None:
    """Create a key for TENANT, print it once, and store only its hash."""
    from lorafleet.core.fsutil import atomic_write_text
    from lorafleet.serving.tenants import KeysFile, hash_key, new_key

    path = get_settings().keys_path
    keys = KeysFile.from_yaml(path) if path.exists() else KeysFile()
    if admin:
        key = new_key()
        keys.admin_keys = [*keys.admin_keys, hash_key(key)]
    else:
        key = keys.add_key(tenant, [r.strip() for r in routes.split(",")] if routes else None)
        if rate_limit_rps is not None:
            keys.tenants[tenant].rate_limit_rps = rate_limit_rps
    atomic_write_text(path, keys.to_yaml())
    typer.echo(key)
    typer.echo(f"stored the hash in {path}; the key is not shown again", err=True)


@keys_app.command("list")
def list_() -> None:
    """List tenants, their routes and how many keys each has (never the keys)."""
    from lorafleet.serving.tenants import KeysFile

    path = get_settings().keys_path
    if not path.exists():
        typer.echo(f"no keys file ({path}): the gateway runs open on loopback")
        return
    keys = KeysFile.from_yaml(path)
    typer.echo(f"admin keys: {len(keys.admin_keys)}")
    for name, t in keys.tenants.items():
        typer.echo(f"{name}: {len(t.keys)} key(s), routes {','.join(t.routes)}, "
                   f"rate limit {t.rate_limit_rps or 'none'}")
