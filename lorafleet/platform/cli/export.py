"""`platform export`: a registry version as a merged Hugging Face folder (thin over lorafleet.training.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorafleet.core.settings import get_settings

__all__ = ["export"]


def export(
    ref: Annotated[str, typer.Argument(help="The version to export: NAME@N (or NAME@ALIAS, NAME for the newest).")],
    merged: Annotated[Path, typer.Option("--merged", help="Folder to write (new or empty): base + adapter merged.")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="A prompt of the agreement check (repeatable).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Greedy tokens per prompt in the check.")] = 24,
    min_agreement: Annotated[float, typer.Option(help="Share of prompts whose answers must agree (0-1).")] = 1.0,
) -> None:
    """Merge a version's LoRA adapter into its base (in the base's dtype) and write a Hugging Face
    folder with the tokenizer and chat template; then check that the merged folder and the adapter
    give the same greedy answers on a few prompts."""
    from lorafleet.training.export import export_merged

    res = export_merged(get_settings(), ref, merged, prompts=prompt, max_new_tokens=max_new_tokens,
                        min_agreement=min_agreement, say=lambda m: typer.echo(m, err=True))
    typer.echo(f"greedy agreement: {res.agreeing}/{res.prompts} prompts identical (merged vs adapter)")
    typer.echo(f"exported {res.ref} merged ({res.dtype}) -> {res.dest}")
