"""The fleet's processes, defined once: what each one runs, with which environment and mounts.

The Kubernetes manifests in ``deploy/k8s`` are rendered from this module
(:mod:`lorafleet.platform.deploy_render`, ``platform deploy render``) and the fleet tests start
the same processes on loopback from it, so a command line or an environment variable cannot
differ between what is tested and what is deployed. Only the addresses and paths of a
:class:`Fleet` differ (service DNS names in a cluster, loopback ports and temporary folders in a
test). Secret values are not here: ``secret_env`` names where each one comes from (a
Kubernetes ``secretKeyRef``); whoever starts a process resolves them (a test passes values).

Processes: ``gateway`` (``platform serve``, N replicas, routes and rate limits shared through
the registry's store and Redis), ``engine`` (``platform engine``: vLLM with lorafleet's LoRA
resolver, fetching ``name@N`` from the registry itself), ``redis`` (the shared rate-limit
store), ``trainer`` (``platform train`` as a Ray job) and ``rayserve`` (the Ray Serve LLM
app, the alternative engine kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from posixpath import dirname
from urllib.parse import urlsplit

from lorafleet.core.settings import DEFAULT_BASE
from lorafleet.serving.engine_kinds import health_path
from lorafleet.training.job import RAY_NODE_ENV

__all__ = [
    "ENGINE_KEY", "ENGINE_REPLICAS", "ENGINE_SECRET", "IMAGE", "KEYS_SECRET", "KUBERNETES", "NAMESPACE",
    "RAYSERVE_APP", "S3_CREDENTIALS", "S3_SECRET", "VERSION",
    "Fleet", "Process", "engine", "gateway", "processes", "rayserve", "redis", "trainer",
]

VERSION = "0.1.0"  # the project's version (pyproject.toml); a unit test keeps them equal
IMAGE = f"ghcr.io/lorafleet/lorafleet:{VERSION}"  # built by `make image` from deploy/Containerfile
NAMESPACE = "lorafleet"

# Secrets (values never in the repository; deploy/k8s/secrets.sh creates them)
S3_SECRET = "lorafleet-s3"          # the S3-compatible store's credentials
ENGINE_SECRET = "lorafleet-engine"  # the bearer key between gateways and engines
KEYS_SECRET = "lorafleet-keys"      # the tenant keys file (hashed keys), mounted as a folder
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": (S3_SECRET, "access_key_id"),
                  "AWS_SECRET_ACCESS_KEY": (S3_SECRET, "secret_access_key")}
ENGINE_KEY = {"LORAFLEET_ENGINE_API_KEY": (ENGINE_SECRET, "api_key")}

RAYSERVE_APP = "lorafleet.serving.rayserve_app:build_app"  # the Ray Serve LLM app's builder


@dataclass(frozen=True)
class Process:
    """One kind of process of the fleet (a container in a cluster, a subprocess in a test)."""

    role: str                                # "gateway" | "engine" | "redis" | "trainer" | "rayserve"
    command: list[str]                       # argv; the first element is the program
    env: dict[str, str]                      # plain environment
    secret_env: dict[str, tuple[str, str]]   # VAR -> (secret name, key); the caller resolves values
    mounts: dict[str, str] = field(default_factory=dict)  # folder -> volume name; a folder, never one file
    port: int | None = None                  # the port it listens on (None: it listens on none)
    health_path: str | None = None           # HTTP path that answers 200 once it is ready
    live_path: str | None = None             # HTTP path that answers 200 while it is alive


@dataclass(frozen=True)
class Fleet:
    """The addresses and paths that differ between a test on loopback and a cluster."""

    registry_url: str                     # s3://bucket/prefix
    s3_endpoint_url: str | None           # None for AWS S3 itself
    redis_url: str                        # redis://host:port/db, shared by every gateway
    engine_urls: list[str]                # what each gateway's --engine-url names
    base: str = DEFAULT_BASE
    gateway_host: str = "0.0.0.0"
    gateway_port: int = 8000
    engine_host: str = "0.0.0.0"
    engine_port: int = 8000
    redis_host: str = "0.0.0.0"           # redis-server's bind address (its port is the URL's)
    keys_file: str = "/etc/lorafleet/keys/keys.yaml"
    home: str = "/var/lib/lorafleet"      # LORAFLEET_HOME: caches only, one per process
    routes_source: str = "registry"       # or the path of a routes file (a ConfigMap folder)
    engine_kind: str = "vllm"             # or "rayserve" (engine_urls then name the Ray Serve app)
    train_config: str = "/opt/lorafleet/examples/support-intents/train.yaml"  # inside the image
    train_workers: int = 2                # Ray Train workers (one per worker pod in a cluster)


def _registry_env(fleet: Fleet) -> dict[str, str]:
    env = {"LORAFLEET_HOME": fleet.home, "LORAFLEET_REGISTRY_URL": fleet.registry_url}
    if fleet.s3_endpoint_url:
        env["LORAFLEET_S3_ENDPOINT_URL"] = fleet.s3_endpoint_url
    return env


def gateway(fleet: Fleet, port: int | None = None) -> Process:
    """One gateway replica: ``platform serve`` in front of the fleet's engines."""
    port = port or fleet.gateway_port
    command = ["platform", "serve", "--base", fleet.base, "--host", fleet.gateway_host, "--port", str(port)]
    for url in fleet.engine_urls:
        command += ["--engine-url", url]
    env = {**_registry_env(fleet),
           "LORAFLEET_ROUTES_SOURCE": fleet.routes_source,
           "LORAFLEET_ADAPTER_LOADING": "engine",
           "LORAFLEET_ENGINE_KIND": fleet.engine_kind,
           "LORAFLEET_RATE_LIMIT_STORAGE": fleet.redis_url,
           "LORAFLEET_KEYS_FILE": fleet.keys_file}
    mounts = {fleet.home: "home", dirname(fleet.keys_file): "keys"}
    if fleet.routes_source != "registry":
        mounts[dirname(fleet.routes_source)] = "routes"
    return Process("gateway", command, env, {**S3_CREDENTIALS, **ENGINE_KEY}, mounts, port,
                   health_path="/readyz", live_path="/healthz")


def engine(fleet: Fleet, port: int | None = None) -> Process:
    """One vLLM engine: ``platform engine``, resolving ``name@N`` from the registry itself.

    ``LORAFLEET_ENGINE_API_KEY`` is always among its secrets: vLLM's ``--api-key`` then guards
    every ``/v1`` path, the runtime LoRA endpoints the resolver needs open included."""
    port = port or fleet.engine_port
    command = ["platform", "engine", "--base", fleet.base, "--host", fleet.engine_host, "--port", str(port)]
    return Process("engine", command, _registry_env(fleet), {**S3_CREDENTIALS, **ENGINE_KEY},
                   {fleet.home: "home", "/dev/shm": "shm"}, port, health_path=health_path("vllm"),
                   live_path=health_path("vllm"))


def redis(fleet: Fleet) -> Process:
    """The store the gateways count per-key rate limits in (nothing persisted)."""
    port = urlsplit(fleet.redis_url).port or 6379
    # protected mode refuses every client off loopback when no password is set; in a cluster the
    # NetworkPolicy beside it admits the gateways only
    command = ["redis-server", "--bind", fleet.redis_host, "--port", str(port), "--protected-mode", "no",
               "--save", "", "--appendonly", "no"]
    return Process("redis", command, {}, {}, {}, port)


def trainer(fleet: Fleet, config: str | None = None) -> Process:
    """``platform train`` as the driver of a Ray job (it joins the job's cluster: ``--address auto``).

    Its environment is every Ray node's too: the nodes read the base, data and Ray Train storage
    by the same paths under the home, a volume every node of the training cluster mounts."""
    command = ["platform", "train", config or fleet.train_config, "--set", f"workers={fleet.train_workers}",
               "--address", "auto"]
    return Process("trainer", command, {**_registry_env(fleet), **RAY_NODE_ENV}, dict(S3_CREDENTIALS),
                   {fleet.home: "train-home", "/dev/shm": "shm"})


def rayserve(fleet: Fleet, port: int = 8000) -> Process:
    """The Ray Serve LLM engine app (``serve run`` form of the RayService's serve config)."""
    command = ["serve", "run", RAYSERVE_APP, f"base={fleet.base}"]
    return Process("rayserve", command, _registry_env(fleet), {**S3_CREDENTIALS, **ENGINE_KEY},
                   {fleet.home: "home", "/dev/shm": "shm"}, port, health_path=health_path("rayserve"))


def processes(fleet: Fleet) -> dict[str, Process]:
    """Every role of the fleet by name."""
    return {p.role: p for p in (gateway(fleet), engine(fleet), redis(fleet), trainer(fleet), rayserve(fleet))}


ENGINE_REPLICAS = 2
KUBERNETES = Fleet(
    registry_url="s3://lorafleet-registry/adapters",
    s3_endpoint_url="http://minio.lorafleet:9000",
    redis_url="redis://lorafleet-redis:6379/0",
    # the engine StatefulSet's pods behind its headless Service: stable DNS names
    engine_urls=[f"http://vllm-engine-{i}.vllm-engine:8000" for i in range(ENGINE_REPLICAS)],
)
