"""lorafleet's vLLM LoRA resolver plugin: an engine fetches ``name@N`` from the registry itself.

vLLM asks its registered LoRA resolvers for an adapter the first time a request names a
model it does not have. This one, switched on with ``LORAFLEET_LORA_RESOLVER=1`` in the
engine's environment, answers for well-formed ``name@N`` only:

1. resolve the version in the registry the engine's settings name (the local folder or
   ``s3://...``: ``LORAFLEET_REGISTRY_URL``, ``LORAFLEET_S3_ENDPOINT_URL``);
2. check the manifest against the engine's base (``base.json`` in the ``--model`` folder:
   same weights and tokenizer hashes, LoRA, rank within ``--max-lora-rank``, target modules);
3. fetch its files into the engine's own cache (``$LORAFLEET_HOME/cache``) verifying every
   file's sha256, then check the tensor shapes against the base;
4. hand vLLM the verified local folder.

Anything else is refused before vLLM sees it: a name that is not ``name@N`` or a version the
registry does not have answers vLLM's 404; a corrupted file, an adapter for another base or
an unreadable registry raises, which vLLM answers with an error naming the reason (and the
file). Nothing is read from a path on the gateway's disk, so engines on other machines load
the same verified bytes.

The plugin is registered through vLLM's ``vllm.general_plugins`` entry point
(``lorafleet_registry_resolver`` in pyproject.toml) and is imported only inside a vLLM process.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lorafleet.core.names import is_version_ref

__all__ = ["ENABLE_ENV", "PLUGIN_NAME", "RegistryFetcher", "register"]

ENABLE_ENV = "LORAFLEET_LORA_RESOLVER"
PLUGIN_NAME = "lorafleet_registry_resolver"  # the entry point's name, for VLLM_PLUGINS
FETCH_THREADS = 16  # registry fetches at once per engine process


class RegistryFetcher:
    """``name@N`` -> a verified local adapter folder compatible with one base (no vLLM needed)."""

    def __init__(self, base_dir: Path, max_lora_rank: int | None = None) -> None:
        from lorafleet.core.settings import get_settings
        from lorafleet.registry import open_registry
        from lorafleet.registry.bases import BASE_MANIFEST, BaseManifest
        from lorafleet.registry.errors import RegistryError

        manifest = Path(base_dir) / BASE_MANIFEST
        if not manifest.is_file():
            raise RegistryError(f"{manifest}: the engine's base has no lorafleet base manifest, so adapters "
                                "cannot be checked against it (pull the base with `platform base pull`)")
        self.base = BaseManifest.model_validate_json(manifest.read_text(encoding="utf-8"))
        self.registry = open_registry(get_settings())
        self.max_lora_rank = max_lora_rank

    def fetch(self, ref: str) -> Path | None:
        """The verified folder of ``ref``; None if it is no ``name@N`` or the registry has no such
        version. Raises RegistryError (IntegrityError, IncompatibleAdapter) for one it must refuse."""
        from lorafleet.registry import check_compatibility
        from lorafleet.registry.errors import NotFound

        if not is_version_ref(ref):
            return None
        try:
            manifest = self.registry.resolve(ref)
        except NotFound:
            return None
        check_compatibility(manifest, self.base, max_lora_rank=self.max_lora_rank)
        folder = self.registry.materialize(manifest)
        check_compatibility(folder, self.base, max_lora_rank=self.max_lora_rank)
        return folder


def _vllm_log():
    """vLLM's logger (its handler): the resolver's lines show in the engine's log, at its level."""
    from vllm.logger import init_logger

    return init_logger("vllm.lorafleet.lora_resolver")


def _resolver_class():
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    vlog = _vllm_log()

    class LorafleetRegistryResolver(LoRAResolver):
        """vLLM's side: one fetcher per base model path, fetches off the event loop."""

        def __init__(self) -> None:
            self._fetchers: dict[str, RegistryFetcher] = {}
            # fetches wait on the registry, not the CPU: their own threads, not the event loop's few
            # default ones (cores + 4), so a burst of first requests for many versions runs in parallel
            self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="lorafleet-fetch")

        def _fetcher(self, base_model_name: str) -> RegistryFetcher:
            if base_model_name not in self._fetchers:
                rank = os.environ.get("LORAFLEET_ENGINE_MAX_LORA_RANK")
                self._fetchers[base_model_name] = RegistryFetcher(Path(base_model_name), int(rank) if rank else None)
            return self._fetchers[base_model_name]

        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            if not is_version_ref(lora_name):
                return None
            started = time.perf_counter()
            try:
                folder = await asyncio.get_running_loop().run_in_executor(
                    self._pool, lambda: self._fetcher(base_model_name).fetch(lora_name))
            except Exception as err:
                vlog.error("refused %s: %s", lora_name, err)
                raise
            if folder is None:
                return None
            vlog.info("resolved %s from the registry into %s in %.0f ms", lora_name, folder,
                     (time.perf_counter() - started) * 1e3)
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(folder))  # vLLM sets the id

    return LorafleetRegistryResolver


def register() -> None:
    """vLLM's ``general_plugins`` hook: register the resolver when ``LORAFLEET_LORA_RESOLVER`` is on."""
    if os.environ.get(ENABLE_ENV, "").lower() not in ("1", "true", "yes"):
        return
    from vllm.lora.resolver import LoRAResolverRegistry

    LoRAResolverRegistry.register_resolver("lorafleet registry", _resolver_class()())
    _vllm_log().info("lorafleet registry resolver on: requests naming name@N load it from the registry")
