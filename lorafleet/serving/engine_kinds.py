"""What differs between the kinds of engine a gateway can front: plain vLLM OpenAI servers and
lorafleet's Ray Serve LLM OpenAI app (:mod:`lorafleet.serving.rayserve_app`). Only the health
path and how a request names an adapter version.

- ``vllm``: ``GET /health`` (vLLM's own); a version is named as itself, ``name@N`` (lorafleet's
  LoRA resolver, or a runtime load, made it known under that name); ``/v1/models`` lists the
  base and the loaded versions (``parent`` set).
- ``rayserve``: ``GET /health`` too, served by lorafleet's ingress: 503 until an LLM replica
  answers its health check (Ray's own ``/-/healthz`` is the HTTP proxy's and answers 200 while
  the model is still loading, so it is not used); a version is ``base:name@N``, Ray Serve LLM's
  LoRA multiplexing id (the part after the first ``:`` is the adapter, so ``@`` is fine);
  ``/v1/models`` lists the base only. The app has no ``/v1/load_lora_adapter`` or
  ``/v1/unload_lora_adapter`` (404): a replica loads a version from the registry on its first
  request and Ray Serve evicts the least recently used over ``max_cpu_loras`` per replica.
"""

from __future__ import annotations

__all__ = ["KINDS", "can_unload", "health_path", "load_request", "model_name"]

KINDS = ("vllm", "rayserve")


def health_path(kind: str) -> str:
    """The path that answers 200 while the engine can serve (``/health`` on both kinds)."""
    _check(kind)
    return "/health"


def model_name(kind: str, base: str | None, version: str | None) -> str | None:
    """The ``model`` a forwarded request names: the version itself on vLLM, ``base:version`` on
    Ray Serve LLM, the base for no version."""
    _check(kind)
    if version is None:
        return base
    return f"{base}:{version}" if kind == "rayserve" else version


def load_request(kind: str, model: str) -> tuple[str, dict]:
    """The request (path, JSON body) that makes an engine load ``model`` from the registry itself.

    vLLM: ``POST /tokenize`` naming it. vLLM resolves an unknown model name through its LoRA
    resolvers (lorafleet's registry resolver) and adds the adapter to its cache before it answers,
    and a tokenization never waits for a place in a batch: a one-token completion would queue
    behind every request in flight and for one of ``--max-loras`` batch slots (15 s p95 loads at 64
    streams over 1,000 adapters, benchmarks/adapters_bench.py). Ray Serve LLM has no tokenize
    route: a one-token completion makes its replica load the version.
    """
    _check(kind)
    if kind == "vllm":
        return "/tokenize", {"model": model, "prompt": "ok"}
    return "/v1/completions", {"model": model, "prompt": "ok", "max_tokens": 1, "temperature": 0}


def can_unload(kind: str) -> bool:
    """Whether the engine has ``/v1/unload_lora_adapter`` (Ray Serve LLM evicts by itself)."""
    _check(kind)
    return kind == "vllm"


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"engine kind {kind!r} is not one of {', '.join(KINDS)}")
