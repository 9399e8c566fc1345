"""`platform engine`: one engine of a fleet, on its own machine, fetching adapters itself.

A plain vLLM OpenAI server for one base, with lorafleet's LoRA resolver plugin switched on: a
request naming ``name@N`` makes the engine fetch that version from the registry its settings
name (``LORAFLEET_REGISTRY_URL``, S3 in a fleet), verify every file's sha256 and the base
compatibility, into its own cache; nothing is read from another machine's disk. Runtime LoRA
loading must be on for resolvers to run, which also opens vLLM's load endpoints; so off
loopback the engine needs ``LORAFLEET_ENGINE_API_KEY``, which vLLM's ``--api-key`` checks on
every ``/v1`` path (those endpoints included) and the gateways send.

The base is pulled into the home first when it is missing (the built-in base comes from a PyPI
package in the image). The process becomes vLLM (exec), so signals reach it directly.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorafleet.core.errors import InputError
from lorafleet.core.settings import Settings
from lorafleet.engine.vllm import EngineConfig, LocalEngine

__all__ = ["resolver_engine", "resolver_environment", "run_engine"]


def resolver_environment(settings: Settings) -> dict[str, str]:
    """What switches the resolver plugin on inside vLLM (the rest comes from the settings' env)."""
    from lorafleet.serving.lora_resolver import ENABLE_ENV, PLUGIN_NAME

    return {ENABLE_ENV: "1", "VLLM_PLUGINS": PLUGIN_NAME,
            "LORAFLEET_ENGINE_MAX_LORA_RANK": str(settings.engine_max_lora_rank),
            "LORAFLEET_HOME": str(settings.home)}


def resolver_engine(settings: Settings, base: str, host: str, port: int | None, **overrides) -> LocalEngine:
    """A :class:`LocalEngine` for ``base`` with the resolver on (and ``--api-key`` when the settings
    have an engine key); refuses an address off loopback without a key."""
    from lorafleet.serving.pidfile import is_loopback

    if not is_loopback(host) and not settings.engine_api_key:
        raise InputError("--host", host, "an engine off loopback needs LORAFLEET_ENGINE_API_KEY: vLLM's adapter "
                                         "endpoints are open while the registry resolver serves")
    model_dir = _base_dir(settings, base)
    extra = list(overrides.pop("extra_args", []))
    if settings.engine_api_key:
        extra += ["--api-key", settings.engine_api_key]
    config = EngineConfig.from_settings(settings, model_dir, base, host=host, port=port, extra_args=extra,
                                        extra_env=resolver_environment(settings), **overrides)
    return LocalEngine(config)


def _base_dir(settings: Settings, base: str) -> Path:
    from lorafleet.platform.base_pull import pull_base

    folder = settings.layout.base(base)
    if not (folder / "base.json").is_file():
        pull_base(settings, base)  # the built-in base; another one must be pulled with --from first
    return folder


def run_engine(settings: Settings, base: str, host: str, port: int) -> None:
    """Become the engine process (never returns)."""
    engine = resolver_engine(settings, base, host, port)
    command = engine.command()
    os.execvpe(command[0], command, engine.environment())
