"""The registry: immutable adapter versions ``name@N``, moving aliases, an audit log.

Storage layout (the same keys on a local folder and on S3):

    adapters/<name>/blobs/<blob-id>/<file>      the version's files, uploaded first
    adapters/<name>/versions/<N>.json           its manifest: the version exists once this does
    adapters/<name>/aliases/<alias>.json        {"version": N}: the only things that move
    adapters/<name>/audit/<time>-<id>.json      one entry per alias change (who, when, from, to, why)
    adapters/<name>/removed/<N>                 gc removed version N: its files are gone, its manifest
                                                stays as a record, so the number is never handed out again

A push uploads the files under a fresh blob id, then publishes the manifest with a
create-if-absent write at the next free number, retrying on the next number when another
pusher won the race. A crash before that leaves only an unreferenced blob (removed by gc),
never a partial version; a push that fails with an error (a full or read-only disk) removes
the files it wrote at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorafleet.core.fsutil import sha256_bytes, sha256_file, staged_dir
from lorafleet.core.names import check_name, split_ref
from lorafleet.core.users import current_user
from lorafleet.registry.bases import BaseManifest, FileEntry
from lorafleet.registry.compat import check_compatibility, read_peft_info
from lorafleet.registry.errors import IntegrityError, NotFound, RegistryError
from lorafleet.registry.manifest import LINEAGE_FIELDS, AdapterManifest, AuditEntry
from lorafleet.registry.refs import library_versions
from lorafleet.registry.storage import Storage

__all__ = ["Registry", "parse_ref", "ORPHAN_GRACE_S"]

ORPHAN_GRACE_S = 3600.0


def parse_ref(ref: str) -> tuple[str, str | None]:
    """'name@3' -> ('name', '3'); 'name@stable' -> ('name', 'stable'); 'name' -> ('name', None)."""
    return split_ref(ref, "REF")


class Registry:
    def __init__(self, storage: Storage, cache_dir: Path) -> None:
        self.storage = storage
        self.cache_dir = cache_dir

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def _prefix(name: str) -> str:
        return f"adapters/{name}"

    def _version_key(self, name: str, version: int) -> str:
        return f"{self._prefix(name)}/versions/{version:08d}.json"

    def _blob_key(self, name: str, blob: str, rel: str) -> str:
        return f"{self._prefix(name)}/blobs/{blob}/{rel}"

    def _removed_key(self, name: str, version: int) -> str:
        return f"{self._prefix(name)}/removed/{version:08d}"

    def _numbers(self, prefix: str) -> list[int]:
        keys = self.storage.list(prefix)
        return sorted(int(k.rsplit("/", 1)[1].removesuffix(".json")) for k in keys if k.rsplit("/", 1)[1][:1].isdigit())

    # -- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted({k.split("/")[1] for k in self.storage.list("adapters/") if "/versions/" in k})

    def _allocated(self, name: str) -> list[int]:
        """Every number ever published, including versions gc removed."""
        return self._numbers(f"{self._prefix(name)}/versions/")

    def removed(self, name: str) -> list[int]:
        """Versions gc removed (their numbers stay taken)."""
        return self._numbers(f"{self._prefix(name)}/removed/")

    def versions(self, name: str) -> list[int]:
        """The live versions of ``name``, oldest first."""
        gone = set(self.removed(name))
        return [v for v in self._allocated(name) if v not in gone]

    def get(self, name: str, version: int) -> AdapterManifest | None:
        """The manifest of a live version, or None (the manifest and the removed marker read at once)."""
        data, removed = self.storage.get_many([self._version_key(name, version), self._removed_key(name, version)])
        if data is None or removed is not None:
            return None
        return AdapterManifest.model_validate_json(data)

    def list(self, name: str | None = None) -> list[AdapterManifest]:
        out = []
        for n in [name] if name else self.names():
            out += [m for v in self.versions(n) if (m := self.get(n, v)) is not None]
        return out

    def aliases(self, name: str) -> dict[str, int]:
        out = {}
        for key in self.storage.list(f"{self._prefix(name)}/aliases/"):
            data = self.storage.get(key)
            if data is not None:
                out[key.rsplit("/", 1)[1].removesuffix(".json")] = json.loads(data)["version"]
        return out

    def audit(self, name: str) -> list[AuditEntry]:
        keys = self.storage.list(f"{self._prefix(name)}/audit/")
        return [AuditEntry.model_validate_json(d) for k in keys if (d := self.storage.get(k)) is not None]

    def resolve(self, ref: str) -> AdapterManifest:
        """NAME@N, NAME@ALIAS or NAME (the newest version)."""
        name, which = parse_ref(ref)
        if which is not None and which.isdigit() and (manifest := self.get(name, int(which))) is not None:
            return manifest  # NAME@N, the engines' case: two reads, no listing (the rest names what is missing)
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"adapter {name!r} not found (adapters: {known})")
        if which is None:
            version = versions[-1]
        elif which.isdigit():
            version = int(which)
        else:
            aliases = self.aliases(name)
            if which not in aliases:
                raise NotFound(f"{name}@{which}: no such version or alias "
                               f"(versions: {', '.join(map(str, versions))}; aliases: {', '.join(aliases) or 'none'})")
            version = aliases[which]
        manifest = self.get(name, version)
        if manifest is None:
            gone = " (removed by gc)" if version in self.removed(name) else ""
            raise NotFound(f"{name}@{version} not found{gone} (versions: {', '.join(map(str, versions))})")
        return manifest

    # -- pushing --------------------------------------------------------------------------
    def push(self, src_dir: Path, name: str, base: BaseManifest, *, created_by: str | None = None,
             parent: int | None = None, lineage: dict[str, Any] | None = None,
             max_lora_rank: int | None = None) -> AdapterManifest:
        """Publish the adapter in ``src_dir`` as the next version of ``name``; return its manifest."""
        check_name(name, "--name")
        src_dir = Path(src_dir)
        if not src_dir.is_dir():
            raise RegistryError(f"{src_dir}: not a folder")
        check_compatibility(src_dir, base, max_lora_rank)  # also: adapter_config.json and weights exist
        peft = read_peft_info(src_dir)
        lineage = dict(lineage or {})
        known = {k: lineage.pop(k) for k in LINEAGE_FIELDS if k in lineage}
        known["library_versions"] = {**library_versions(), **(known.get("library_versions") or {})}
        files = {p.relative_to(src_dir).as_posix(): p for p in sorted(src_dir.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}
        entries = {rel: FileEntry(size_bytes=p.stat().st_size, sha256=sha256_file(p)) for rel, p in files.items()}
        blob = uuid.uuid4().hex
        written: list[str] = []
        version: int | None = None
        try:
            for rel, path in files.items():
                written.append(self._blob_key(name, blob, rel))
                self.storage.put_file(written[-1], path)
            draft = dict(name=name, created_at=datetime.now(UTC), created_by=created_by or current_user(), parent=parent,
                         base=base.identity, peft=peft, extra=lineage, blob=blob, files=entries, **known)
            existing = self._allocated(name)
            version = (existing[-1] if existing else 0) + 1
            for _ in range(10_000):
                manifest = AdapterManifest(version=version, **draft)
                if self.storage.create(self._version_key(name, version), manifest.model_dump_json(indent=2).encode()):
                    return manifest
                version += 1  # another pusher took this number
            raise RegistryError(f"could not allocate a version of {name}")
        except BaseException:
            self._discard_failed_push(name, blob, written, version)
            raise

    def _discard_failed_push(self, name: str, blob: str, keys: list[str], version: int | None) -> None:
        """Best effort: remove a failed push's files (a full disk should not stay full of them), unless
        the manifest it was publishing did land (an error after the write): then they are a version's."""
        with contextlib.suppress(Exception):
            data = self.storage.get(self._version_key(name, version)) if version is not None else None
            if data is None or json.loads(data).get("blob") != blob:
                self.storage.delete(keys)

    # -- integrity ------------------------------------------------------------------------
    def _check_file(self, m: AdapterManifest, rel: str, path: Path) -> None:
        entry = m.files[rel]
        if not path.is_file():
            raise IntegrityError(f"{m.ref}: file {rel} is missing")
        if path.stat().st_size != entry.size_bytes or sha256_file(path) != entry.sha256:
            raise IntegrityError(f"{m.ref}: file {rel} does not match its sha256 (corrupted)")

    def verify(self, ref: str) -> AdapterManifest:
        """Re-hash every stored file; IntegrityError names the first one that changed."""
        m = self.resolve(ref)
        for rel, entry in m.files.items():
            key = self._blob_key(m.name, m.blob, rel)
            local = self.storage.local_path(key)
            if local is not None:
                self._check_file(m, rel, local)
                continue
            data = self.storage.get(key)
            if data is None:
                raise IntegrityError(f"{m.ref}: file {rel} is missing")
            if len(data) != entry.size_bytes or sha256_bytes(data) != entry.sha256:
                raise IntegrityError(f"{m.ref}: file {rel} does not match its sha256 (corrupted)")
        return m

    def pull(self, ref: str | AdapterManifest, dest: Path) -> Path:
        """Copy a version's files into ``dest`` (created whole or not at all), verified."""
        m = ref if isinstance(ref, AdapterManifest) else self.resolve(ref)
        dest = Path(dest)
        if dest.exists():
            raise RegistryError(f"{dest} already exists")
        with staged_dir(dest) as stage:
            rels = list(m.files)
            got = self.storage.get_files([(self._blob_key(m.name, m.blob, rel), stage / rel) for rel in rels])
            for rel, ok in zip(rels, got, strict=True):
                if not ok:
                    raise IntegrityError(f"{m.ref}: file {rel} is missing")
                self._check_file(m, rel, stage / rel)
        return dest

    def materialize(self, ref: str | AdapterManifest) -> Path:
        """A verified local folder with the version's files (for an engine to load); ``ref`` may be
        the manifest :meth:`resolve` already returned."""
        m = ref if isinstance(ref, AdapterManifest) else self.resolve(ref)
        local = self.storage.local_path(self._blob_key(m.name, m.blob, "x"))
        if local is not None:
            folder = local.parent
            for rel in m.files:
                self._check_file(m, rel, folder / rel)
            return folder
        folder = self.cache_dir / "registry" / m.name / str(m.version)
        if folder.is_dir():
            try:
                for rel in m.files:
                    self._check_file(m, rel, folder / rel)
                return folder
            except IntegrityError:
                shutil.rmtree(folder, ignore_errors=True)
        tmp = self.pull(m, folder.parent / f".pull-{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(tmp, folder)  # another process may have materialized it meanwhile: keep theirs
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            for rel in m.files:
                self._check_file(m, rel, folder / rel)
        return folder

    # -- aliases and gc -------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int | None, *, actor: str | None = None,
                  reason: str = "") -> None:
        """Point ``name@alias`` at ``version`` (None removes it); the change is audited."""
        check_name(name, "NAME")
        check_name(alias, "ALIAS")
        if alias.isdigit():
            raise RegistryError(f"alias {alias!r} cannot be a number")
        if version is not None and self.get(name, version) is None:
            raise NotFound(f"{name}@{version} not found (versions: {', '.join(map(str, self.versions(name))) or 'none'})")
        before = self.aliases(name).get(alias)
        key = f"{self._prefix(name)}/aliases/{alias}.json"
        if version is None:
            self.storage.delete([key])
        else:
            self.storage.put(key, json.dumps({"version": version}).encode())
            if self.get(name, version) is None:  # gc removed it meanwhile: put the alias back
                if before is None:
                    self.storage.delete([key])
                else:
                    self.storage.put(key, json.dumps({"version": before}).encode())
                raise NotFound(f"{name}@{version} was just removed by gc")
        entry = AuditEntry(at=datetime.now(UTC), actor=actor or current_user(), name=name, alias=alias,
                           from_version=before, to_version=version, reason=reason)
        stamp = entry.at.strftime("%Y%m%dT%H%M%S%f")
        self.storage.create(f"{self._prefix(name)}/audit/{stamp}-{uuid.uuid4().hex[:8]}.json",
                            entry.model_dump_json().encode())

    def gc(self, named: set[str], dry_run: bool = False, orphan_grace_s: float = ORPHAN_GRACE_S) -> list[str]:
        """Remove versions that no alias points to, that ``named`` (the routes file) does not
        name, and that are not their adapter's newest; and files of pushes that crashed more
        than ``orphan_grace_s`` ago. Returns what was (or, with ``dry_run``, would be) removed.

        A removed version is first marked removed (it stops resolving at once), then its files
        are deleted; its manifest stays so its number is never allocated again.
        """
        removed = []
        for name in sorted({k.split("/")[1] for k in self.storage.list("adapters/")}):
            versions = self.versions(name)  # may be none: only a crashed first push's files
            keep = set(self.aliases(name).values()) | set(versions[-1:]) | {
                int(r.partition("@")[2]) for r in named if r.partition("@")[0] == name}
            handled = set()  # blobs of kept versions, and of versions removed just now
            for v in versions:
                m = self.get(name, v)
                if m is None:
                    continue
                handled.add(m.blob)
                if v in keep:
                    continue
                removed.append(m.ref)
                if not dry_run:  # unpublish first, then delete the files
                    self.storage.create(self._removed_key(name, v), m.ref.encode())
                    if v in self.aliases(name).values():  # an alias moved here meanwhile: keep it
                        self.storage.delete([self._removed_key(name, v)])
                        removed.pop()
                        continue
                    self.storage.delete(self.storage.list(f"{self._prefix(name)}/blobs/{m.blob}/"))
            removed += self._gc_orphans(name, handled, dry_run, orphan_grace_s)
        return removed

    def _gc_orphans(self, name: str, handled: set[str], dry_run: bool, grace_s: float) -> list[str]:
        """Blobs no live version uses and nothing wrote to for ``grace_s`` (crashed pushes)."""
        now, out = time.time(), []
        blob_keys = self.storage.list(f"{self._prefix(name)}/blobs/")
        by_blob: dict[str, list[str]] = {}
        for k in blob_keys:
            by_blob.setdefault(k.split("/")[3], []).append(k)
        for blob, keys in sorted(by_blob.items()):
            if blob in handled:
                continue
            stamps = [t for k in keys if (t := self.storage.modified_at(k)) is not None]
            if stamps and now - max(stamps) >= grace_s:
                out.append(f"{name} blob {blob} (unpublished push)")
                if not dry_run:
                    self.storage.delete(keys)
        return out
