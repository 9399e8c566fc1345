"""Platform settings: one pydantic-settings model, env prefix ``LORAFLEET_``.

The platform home (``LORAFLEET_HOME``, default ``~/.lorafleet``) holds everything the
embedded platform writes. Its layout is defined here and nowhere else:

    $LORAFLEET_HOME/
      bases/<name>/          Hugging Face folder of a base model + base.json (its identity)
      registry/              the local registry backend (adapter versions, aliases, audit)
      routes.yaml            the routes file: the one place that decides traffic
      keys.yaml              tenant API keys, hashed (absent: the gateway runs open on loopback)
      run/                   pid files of background processes (`platform serve --detach`)
      logs/                  engine and gateway logs
      ray/                   Ray Train storage (checkpoints, results)
      cache/                 derived data safe to delete (eval caches, tokenized data)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lorafleet.core.config import ConfigError, format_validation_error

__all__ = ["Settings", "HomeLayout", "DEFAULT_BASE", "get_settings"]

DEFAULT_BASE = "smollm2-135m-instruct"


class HomeLayout:
    """Paths inside the platform home. Creating folders is left to whoever writes them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def bases(self) -> Path:
        return self.root / "bases"

    def base(self, name: str) -> Path:
        return self.bases / name

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def routes_file(self) -> Path:
        return self.root / "routes.yaml"

    @property
    def keys_file(self) -> Path:
        return self.root / "keys.yaml"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


class Settings(BaseSettings):
    """Settings read from ``LORAFLEET_*`` environment variables (and their defaults)."""

    model_config = SettingsConfigDict(env_prefix="LORAFLEET_", extra="forbid")

    home: Path = Field(
        default=Path("~/.lorafleet"),
        description="Platform home: bases, local registry, routes file, logs, Ray storage.",
    )
    default_base: str = Field(
        default=DEFAULT_BASE, description="Base model used when a command names none."
    )
    registry_url: str | None = Field(
        default=None,
        description="Registry location: unset for the local folder in the home, or "
        "s3://bucket/prefix for an S3-compatible store.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of the S3-compatible store (MinIO, moto, AWS)."
    )
    engine_max_loras: int = Field(
        default=4, ge=1, description="Adapters vLLM keeps active in one batch (--max-loras)."
    )
    engine_max_cpu_loras: int = Field(
        default=16, ge=1, description="Adapters vLLM caches in CPU memory (--max-cpu-loras)."
    )
    engine_max_lora_rank: int = Field(
        default=64, ge=1, description="Largest adapter rank the engine accepts (--max-lora-rank)."
    )
    engine_max_model_len: int = Field(
        default=2048, ge=64, description="Context length the engine serves (--max-model-len)."
    )
    engine_cpu_lora_ops: bool = Field(
        default=True,
        description="On a CPU engine, lorafleet's LoRA ops (one matmul per adapter in the batch, "
        "lorafleet.engine.cpu_lora) replace vLLM's per-token ones; false keeps vLLM's.",
    )
    engine_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto",
        description="The engine's weights and activations (--dtype): auto = bfloat16 where the CPU computes it "
        "natively (AVX512, AVX512-BF16, AMX), float32 elsewhere (on an AVX2-only CPU vLLM's bf16 is many times slower).",
    )
    engine_kvcache_gib: int = Field(
        default=1, ge=1, description="KV cache size on the CPU engine (VLLM_CPU_KVCACHE_SPACE)."
    )
    engine_start_timeout_s: float = Field(
        default=300.0, gt=0, description="How long to wait for a starting engine to be healthy."
    )
    routes_source: str = Field(
        default="",
        description="Where the routes document lives: empty for routes.yaml in the home; `registry` for one "
        "document in the registry's store (on S3 every change is a conditional write on its ETag; every gateway "
        "polls it), shared by N gateways and any CLI; or the path of a routes file, e.g. a Kubernetes ConfigMap "
        "mounted without subPath (followed through kubelet's `..data` swap, read-only there).",
    )
    keys_file: Path | None = Field(
        default=None, description="Tenant keys file (hashed); default keys.yaml in the home (e.g. a mounted Secret)."
    )
    adapter_loading: Literal["gateway", "engine"] = Field(
        default="gateway",
        description="Who fetches adapter versions: `gateway` (embedded default: the gateway materializes a "
        "verified copy and passes its path to vLLM's load endpoint; needs a disk the engine can read) or "
        "`engine` (engines run lorafleet's LoRA resolver and fetch name@N from the registry themselves; the "
        "gateway only names versions and preloads them with a one-token request).",
    )
    engine_kind: Literal["vllm", "rayserve"] = Field(
        default="vllm",
        description="What the engine URLs are: plain vLLM OpenAI servers, or a Ray Serve LLM OpenAI app "
        "(adapters named base:name@N, no runtime load endpoints).",
    )
    engine_api_key: str | None = Field(
        default=None,
        description="Bearer key between gateways and engines: `platform engine` passes it to vLLM's --api-key "
        "(guarding every /v1 path, the runtime LoRA endpoints too) and the gateway sends it.",
    )
    rate_limit_storage: str | None = Field(
        default=None,
        description="Where per-key rate limits are counted: unset for each gateway process on its own, or a "
        "`redis://host:port/db` URL shared by every gateway replica.",
    )
    gateway_embedding_drift: bool = Field(
        default=False,
        description="Gateway: embed a sample of prompts with the offline MiniLM (a background thread) and "
        "export their drift from each version's training centroid (`platform serve --embedding-drift`).",
    )

    @field_validator("home")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def layout(self) -> HomeLayout:
        return HomeLayout(self.home)

    @property
    def keys_path(self) -> Path:
        """The tenant keys file (``keys_file``, else keys.yaml in the home)."""
        return self.keys_file or self.layout.keys_file


def get_settings() -> Settings:
    """Fresh settings from the environment (cheap; tests change the env between calls).

    A bad ``LORAFLEET_*`` value raises a :class:`ConfigError` naming the field and the value, which
    the CLI prints as one line with exit code 2.
    """
    try:
        return Settings()
    except ValidationError as err:  # the field is the variable's name after the prefix
        raise ConfigError(format_validation_error(err, "settings (LORAFLEET_<FIELD> environment)")) from None
