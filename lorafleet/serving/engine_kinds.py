"""What differs between the kinds of engine a gateway can front: plain vLLM OpenAI servers and
Ray Serve LLM OpenAI apps. Only the health path and how a request names an adapter version."""

from __future__ import annotations

__all__ = ["health_path", "model_name"]


def health_path(kind: str) -> str:
    """The path that answers 200 while the engine can serve."""
    return "/-/healthz" if kind == "rayserve" else "/health"


def model_name(kind: str, base: str | None, version: str | None) -> str | None:
    """The ``model`` a forwarded request names: the version itself on vLLM (its LoRA resolver or a
    runtime load made it known under that name), ``base:version`` on Ray Serve LLM (its LoRA
    multiplexing), the base for no version."""
    if version is None:
        return base
    return f"{base}:{version}" if kind == "rayserve" else version
