"""Base-model identities: the manifest written beside each base in ``$HOME/bases/<name>``.

Adapters record the :class:`BaseIdentity` of the base they were trained on, and are
checked against it before they ever reach an engine.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from lorafleet.core.fsutil import sha256_bytes, sha256_file
from lorafleet.registry.errors import IntegrityError, NotFound

__all__ = [
    "BASE_MANIFEST",
    "BaseIdentity",
    "BaseManifest",
    "FileEntry",
    "BaseStore",
    "hash_base_folder",
    "WEIGHT_SUFFIXES",
    "TOKENIZER_FILES",
]

BASE_MANIFEST = "base.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


class FileEntry(BaseModel):
    size_bytes: int = Field(description="File size in bytes.")
    sha256: str = Field(description="sha256 of the file's bytes.")


class BaseIdentity(BaseModel):
    """What makes a base the same base: its name and the hashes of what it computes with."""

    name: str = Field(description="Base name in the platform home.")
    weights_sha256: str = Field(description="sha256 over the sorted (file, sha256) of weights.")
    tokenizer_sha256: str = Field(description="sha256 over the sorted tokenizer files.")
    chat_template_sha256: str | None = Field(
        default=None, description="sha256 of the chat template text (None if it has none)."
    )


class BaseManifest(BaseModel):
    """Everything recorded about one base model."""

    identity: BaseIdentity = Field(description="The identity adapters are checked against.")
    source: str = Field(description="Where it came from (a PyPI package file or a folder).")
    created_at: datetime = Field(description="When it was pulled (UTC).")
    architecture: str = Field(description="The transformers architecture, e.g. LlamaForCausalLM.")
    model_type: str = Field(description="config.json model_type, e.g. llama.")
    parameter_count: int = Field(description="Number of parameters.")
    num_hidden_layers: int = Field(description="Number of transformer layers.")
    linear_modules: dict[str, list[int]] = Field(
        description="Leaf names of the Linear layers LoRA can target -> [in_features, out_features]."
    )
    files: dict[str, FileEntry] = Field(description="Every file of the folder with size and hash.")
    smoke_prompt: str = Field(description="Prompt of the greedy smoke generation.")
    smoke_output: str = Field(description="What the base answered to it at pull time.")

    @property
    def name(self) -> str:
        return self.identity.name


def _combined(entries: dict[str, FileEntry], names: list[str]) -> str:
    return sha256_bytes("\n".join(f"{n} {entries[n].sha256}" for n in sorted(names)).encode())


def _chat_template_text(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        tmpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(tmpl, str):
            return tmpl
    return None


def hash_base_folder(folder: Path, name: str) -> tuple[BaseIdentity, dict[str, FileEntry]]:
    """Hash every file of a base folder (except its manifest) and derive its identity."""
    files = {
        p.relative_to(folder).as_posix(): FileEntry(size_bytes=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != BASE_MANIFEST
    }
    weights = [n for n in files if n.endswith(WEIGHT_SUFFIXES)]
    tokenizer = [n for n in files if Path(n).name in TOKENIZER_FILES]
    template = _chat_template_text(folder)
    identity = BaseIdentity(
        name=name,
        weights_sha256=_combined(files, weights),
        tokenizer_sha256=_combined(files, tokenizer),
        chat_template_sha256=sha256_bytes(template.encode()) if template is not None else None,
    )
    return identity, files


class BaseStore:
    """The bases in ``$HOME/bases``: one folder each, published whole with its manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def get(self, name: str) -> BaseManifest | None:
        manifest = self.path(name) / BASE_MANIFEST
        if not manifest.is_file():
            return None
        return BaseManifest.model_validate_json(manifest.read_text(encoding="utf-8"))

    def list(self) -> list[BaseManifest]:
        if not self.root.is_dir():
            return []
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if not p.name.startswith("."))
        return [m for m in found if m is not None]

    def require(self, name: str) -> BaseManifest:
        manifest = self.get(name)
        if manifest is None:
            known = ", ".join(m.name for m in self.list()) or "none yet"
            raise NotFound(
                f"base {name!r} not found in {self.root} (available: {known}); "
                "run `platform base pull` first"
            )
        return manifest

    def verify(self, name: str) -> BaseManifest:
        """Re-hash every file of a base; raise :class:`IntegrityError` naming a changed file."""
        manifest = self.require(name)
        folder = self.path(name)
        for rel, entry in manifest.files.items():
            path = folder / rel
            if not path.is_file():
                raise IntegrityError(f"base {name}: file {rel} is missing")
            if path.stat().st_size != entry.size_bytes or sha256_file(path) != entry.sha256:
                raise IntegrityError(f"base {name}: file {rel} does not match its sha256")
        return manifest
