"""The routes file: the one place that decides which adapter version gets which traffic.

    routes:
      support-intents:                  # the logical model clients ask for
        stable: support-intents@3
        canary: {version: support-intents@4, weight: 5}   # percent, 0-100, decimals allowed
        schema: schemas/support.json     # optional response schema: a JSON schema file
                                         # (relative to this file) or pydantic:module:Class
        validator: enforce               # with a schema: enforce | validate | reject
        tenants: [acme]                  # optional: tenants allowed to call it
        max_prompt_tokens: 1024          # optional input checks
        max_messages: 20
        pii: redact                      # reject | redact e-mail addresses and card numbers
        price: {input_usd_per_million: 0.1, output_usd_per_million: 0.4}

The gateway watches the file and applies a valid change within a second; an invalid file
is rejected with a logged reason and the last good routes stay in force. Rollback is one
change to this file, by the CLI or by a person with an editor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from lorafleet.core.config import ConfigError, ConfigModel
from lorafleet.core.fsutil import atomic_write_text
from lorafleet.core.names import NAME_PATTERN, VERSION_REF, parse_version_ref

__all__ = ["Analysis", "Canary", "Price", "Route", "RoutesFile", "parse_version_ref", "is_base_ref", "VERSION_REF"]

def _check_ref(ref: str) -> str:
    parse_version_ref(ref)
    return ref


def is_base_ref(ref: str) -> bool:
    """A route's stable may name the base model itself (no ``@``): the first rollout of an adapter."""
    return "@" not in ref


def _check_stable(ref: str) -> str:
    if is_base_ref(ref):
        if not NAME_PATTERN.match(ref):
            raise ValueError(f"{ref!r} is neither name@N nor a base model name")
        return ref
    return _check_ref(ref)


class Canary(ConfigModel):
    """A second version that gets a share of a route's traffic."""

    version: str = Field(description="Adapter version, name@N.")
    weight: float = Field(ge=0, le=100, description="Percent of the route's traffic, 0-100.")

    _ref = field_validator("version")(classmethod(lambda cls, v: _check_ref(v)))


class Price(ConfigModel):
    """What a route's tokens cost: per million tokens, or a GPU-hour price spread over tokens."""

    input_usd_per_million: float = Field(default=0.0, ge=0, description="USD per million prompt tokens.")
    output_usd_per_million: float = Field(default=0.0, ge=0, description="USD per million completion tokens.")
    gpu_hour_usd: float | None = Field(default=None, ge=0, description="GPU-hour price, apportioned by tokens.")
    tokens_per_gpu_hour: float | None = Field(
        default=None, gt=0, description="Tokens (prompt + completion) one GPU-hour serves; needed with gpu_hour_usd."
    )

    @model_validator(mode="after")
    def _gpu_pair(self) -> Price:
        if (self.gpu_hour_usd is None) != (self.tokens_per_gpu_hour is None):
            raise ValueError("gpu_hour_usd and tokens_per_gpu_hour go together")
        return self

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        cost = (prompt_tokens * self.input_usd_per_million + completion_tokens * self.output_usd_per_million) / 1e6
        if self.gpu_hour_usd is not None:
            cost += self.gpu_hour_usd * (prompt_tokens + completion_tokens) / self.tokens_per_gpu_hour
        return cost


class Analysis(ConfigModel):
    """Automatic canary analysis for a route: when to roll back, when to step up.

    Every ``interval_s`` the canary is compared with the stable variant over that interval;
    with at least ``min_requests`` on each, a breach of any threshold rolls the canary back,
    otherwise its weight moves to the next of ``steps`` and, after the last, it becomes stable.
    """

    interval_s: float = Field(default=60.0, gt=0, description="Seconds between two judgements.")
    min_requests: int = Field(default=50, ge=1, description="Requests each variant needs in an interval.")
    max_error_rate_increase: float = Field(
        default=0.02, ge=0, description="Canary error rate (5xx and 422) minus stable's, at most."
    )
    max_schema_failure_increase: float = Field(
        default=0.05, ge=0, description="Canary schema-failure rate minus stable's, at most."
    )
    max_p95_latency_ratio: float = Field(default=1.5, gt=0, description="Canary p95 latency / stable's, at most.")
    max_drift_psi: float = Field(default=0.25, ge=0, description="Canary prompt-length drift (PSI), at most.")
    steps: list[float] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0, 100.0],
        description="Canary weights to step through, in percent; 100 means promote to stable.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x <= 100 for x in v) or v != sorted(set(v)):
            raise ValueError("steps must be increasing percentages in (0, 100]")
        return v


class Route(ConfigModel):
    """One logical model: a stable version and an optional canary."""

    stable: str = Field(
        description="Version serving the traffic the canary does not get: name@N, or the base model's name."
    )
    canary: Canary | None = Field(default=None, description="Optional canary version and its weight.")
    schema_path: str | None = Field(
        default=None, alias="schema", description="Optional JSON schema file responses must satisfy."
    )
    validator: Literal["enforce", "validate", "reject"] | None = Field(
        default=None, description="How the schema is applied: enforce, validate or reject."
    )
    tenants: list[str] | None = Field(
        default=None, description="Tenants allowed to call this route (None: every tenant)."
    )
    max_prompt_tokens: int | None = Field(default=None, ge=1, description="Refuse longer prompts (400).")
    max_messages: int | None = Field(default=None, ge=1, description="Refuse chats with more messages (400).")
    pii: Literal["reject", "redact"] | None = Field(
        default=None, description="E-mail addresses and card numbers in prompts: refuse (400) or mask them."
    )
    price: Price | None = Field(default=None, description="Token prices for the cost metric.")
    analysis: Analysis | None = Field(default=None, description="Automatic canary analysis settings.")

    model_config = ConfigModel.model_config | {"populate_by_name": True}

    _ref = field_validator("stable")(classmethod(lambda cls, v: _check_stable(v)))

    @model_validator(mode="after")
    def _canary_differs(self) -> Route:
        if self.canary is not None and self.canary.version == self.stable:
            raise ValueError(f"canary version {self.canary.version} is the stable version")
        return self

    @model_validator(mode="after")
    def _validator_needs_schema(self) -> Route:
        if self.validator is not None and self.schema_path is None:
            raise ValueError(f"validator {self.validator!r} needs a schema")
        return self

    def versions(self) -> list[str]:
        """Adapter versions (name@N) the route names; the base model is not one."""
        named = [self.stable] + ([self.canary.version] if self.canary else [])
        return [v for v in named if not is_base_ref(v)]


class RoutesFile(ConfigModel):
    """The whole routes file."""

    routes: dict[str, Route] = Field(default_factory=dict, description="Logical model name -> route.")
    engines: list[str] | None = Field(
        default=None,
        description="Root URLs of the engines every gateway forwards to; when set it replaces the gateways' "
        "--engine-url list, so engines join and leave with one change and no gateway restart.",
    )

    @field_validator("engines")
    @classmethod
    def _engine_urls(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("engines: at least one engine URL (or leave the key out)")
            for url in v:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"engines: {url!r} is not an http(s) URL")
        return v

    @field_validator("routes")
    @classmethod
    def _names(cls, v: dict[str, Route]) -> dict[str, Route]:
        for name in v:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"route name {name!r} is not a safe name")
        return v

    @classmethod
    def load(cls, path: Path) -> RoutesFile:
        """Parse and validate a routes file; a missing file means no routes."""
        if not path.exists():
            return cls()
        return cls.from_yaml(path)

    @classmethod
    def parse_text(cls, text: str, source: str) -> RoutesFile:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML: {err}".replace("\n", " ")) from None
        return cls.from_mapping(data if data is not None else {}, source=source)

    def dump(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True, by_alias=True), sort_keys=False
        )

    def save(self, path: Path) -> None:
        """Write atomically: readers see the old file or the new one."""
        atomic_write_text(path, self.dump())
