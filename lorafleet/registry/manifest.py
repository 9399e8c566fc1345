"""The manifest of one adapter version: everything needed to trust it, reproduce it and
watch it in production. Written once, when the version is published; never changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from lorafleet.registry.bases import BaseIdentity, FileEntry
from lorafleet.registry.fingerprint import Fingerprint, Histogram

__all__ = ["LINEAGE_FIELDS", "AdapterManifest", "AuditEntry", "Fingerprint", "Histogram", "PeftInfo", "parent_chain"]


class PeftInfo(BaseModel):
    peft_type: str = Field(description="LORA (QLoRA adapters are LORA over a 4-bit base).")
    r: int = Field(description="Rank.")
    lora_alpha: float = Field(description="Scaling numerator.")
    lora_dropout: float = Field(default=0.0, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(description="Leaf names of the adapted Linear layers.")
    base_model_name_or_path: str | None = Field(default=None, description="As recorded by peft.")


# keys of the lineage a training run hands to push(); anything else lands in `extra`
LINEAGE_FIELDS = ("training_config", "seed", "method", "quantization", "dataset_sha256", "prompt_template_sha256",
                  "prompt_template_version", "library_versions", "training_metrics", "eval_metrics", "fingerprint",
                  "gate", "ray_run")


class AdapterManifest(BaseModel):
    name: str = Field(description="Adapter name.")
    version: int = Field(description="Version number, 1, 2, ... (never reused).")
    created_at: datetime = Field(description="When it was published (UTC).")
    created_by: str = Field(description="Who pushed it.")
    parent: str | None = Field(
        default=None, description="The name@N it was derived from (continued training), if any. A bare "
        "number N (older manifests, `registry push --parent N`) means a version of the same name.")
    base: BaseIdentity = Field(description="Identity of the base it was trained on.")
    peft: PeftInfo = Field(description="The adapter's peft configuration.")
    training_config: dict[str, Any] | None = Field(default=None, description="The full training config.")
    seed: int | None = Field(default=None, description="Random seed of the run.")
    method: str | None = Field(default=None, description="sft or dpo.")
    quantization: str | None = Field(default=None, description="none or nf4 (QLoRA).")
    dataset_sha256: dict[str, str] = Field(default_factory=dict, description="train/eval/golden file hashes.")
    prompt_template_sha256: str | None = Field(default=None, description="Chat template it was trained with.")
    prompt_template_version: str | None = Field(default=None, description="Prompt template version label, if any.")
    library_versions: dict[str, str] = Field(
        default_factory=dict, description="torch, transformers, peft, trl, vllm versions (filled at push if not given).")
    training_metrics: dict[str, Any] = Field(default_factory=dict, description="Loss, steps, tokens/s, ...")
    eval_metrics: dict[str, Any] = Field(default_factory=dict, description="Held-out and golden results.")
    fingerprint: Fingerprint | None = Field(default=None, description="Training distribution for drift.")
    gate: dict[str, Any] | None = Field(default=None, description="Evaluation gate result (and --force).")
    ray_run: str | None = Field(default=None, description="Ray Train run name.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Any other lineage given at push.")
    blob: str = Field(description="Storage id of the version's files.")
    files: dict[str, FileEntry] = Field(description="Every file with size and sha256.")

    @model_validator(mode="before")
    @classmethod
    def _parent_ref(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("parent"), int) and not isinstance(data["parent"], bool):
            data = {**data, "parent": f"{data.get('name')}@{data['parent']}"}
        return data

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files.values())


class AuditEntry(BaseModel):
    at: datetime = Field(description="When (UTC).")
    actor: str = Field(description="Who.")
    name: str = Field(description="Adapter name.")
    alias: str = Field(description="Alias that moved.")
    from_version: int | None = Field(description="Where it pointed before (None: nowhere).")
    to_version: int | None = Field(description="Where it points now (None: removed).")
    reason: str = Field(description="Why.")


def parent_chain(manifest: AdapterManifest, resolve: Callable[[str], AdapterManifest | None],
                 limit: int = 32) -> list[str]:
    """The refs a version descends from, nearest first (parent, grandparent, ...).

    ``resolve`` returns a ref's manifest or None; a parent that is gone ends the chain as
    ``"name@N (missing)"``, and a cycle or a chain longer than ``limit`` ends it too.
    """
    chain: list[str] = []
    seen = {manifest.ref}
    current: AdapterManifest | None = manifest
    while current is not None and current.parent and len(chain) < limit:
        ref = current.parent
        if ref in seen:
            break
        seen.add(ref)
        current = resolve(ref)
        chain.append(ref if current is not None else f"{ref} (missing)")
    return chain
