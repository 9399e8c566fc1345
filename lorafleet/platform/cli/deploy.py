"""`platform deploy render`: the Kubernetes manifests, rendered from the fleet topology."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["deploy_app"]

deploy_app = typer.Typer(help="Deployment files made from the tested fleet topology.", no_args_is_help=True)


@deploy_app.command("render")
def render(
    out: Annotated[Path, typer.Option(help="Folder to write the manifests into.")] = Path("deploy/k8s"),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if OUT differs from the render.")] = False,
    registry_url: Annotated[str | None, typer.Option(help="The registry (s3://bucket/prefix) instead of the example's.")] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="The S3 endpoint instead of the example's MinIO; "
                                                              "'' for AWS S3 itself.")] = None,
    image: Annotated[str | None, typer.Option(help="The lorafleet image (default: the one `make image` builds).")] = None,
    engine_kind: Annotated[str, typer.Option(help="What the gateways front: vllm (the engine StatefulSet) or "
                                                  "rayserve (the RayService's Ray Serve LLM app).")] = "vllm",
    routes_configmap: Annotated[bool, typer.Option(
        "--routes-configmap", help="Gateways read the routes from the ConfigMap lorafleet-routes, mounted as a "
                                   "folder (read-only: change it with kubectl), instead of the registry's store.")] = False,
) -> None:
    """Render deploy/k8s from lorafleet/platform/topology.py: the gateway Deployment, the engine
    StatefulSet, Redis, the KubeRay RayService, RayCluster and RayJob, the ServiceMonitor and
    secrets.sh (which creates the Secrets from your environment).

    The committed deploy/k8s is this command's output with no options; a unit test keeps it so.
    """
    from lorafleet.core.errors import InputError
    from lorafleet.platform import deploy_render, topology

    fleet = topology.KUBERNETES
    if registry_url is not None:
        fleet = replace(fleet, registry_url=registry_url)
    if s3_endpoint_url is not None:
        fleet = replace(fleet, s3_endpoint_url=s3_endpoint_url or None)
    if engine_kind == "rayserve":
        fleet = deploy_render.rayserve_engines(fleet)
    elif engine_kind != "vllm":
        raise InputError("--engine-kind", engine_kind, "must be vllm or rayserve")
    if routes_configmap:
        fleet = deploy_render.configmap_routes(fleet)
    files = deploy_render.render(fleet, image or topology.IMAGE)
    if check:
        problems = deploy_render.check(out, files)
        for line in problems:
            typer.echo(line, err=True)
        if problems:
            typer.echo("run `platform deploy render` to render them again", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out}: {len(files)} files as rendered")
        return
    changed = deploy_render.write(out, files)
    stale = [line for line in deploy_render.check(out, files) if line.endswith("not rendered from the topology")]
    typer.echo(f"{out}: {len(files)} files rendered, {len(changed)} changed")
    for line in stale:
        typer.echo(f"warning: {line} (remove it if it is a leftover)", err=True)
