"""Where the routes document lives, for the gateways that follow it and the CLI that changes it.

One interface, three places (``LORAFLEET_ROUTES_SOURCE``):

- unset: ``routes.yaml`` in the home (one machine), changed under a lock file with an atomic
  rename, its history in ``routes.history.jsonl`` beside it;
- ``registry``: one object in the registry's store (:class:`~lorafleet.registry.documents.SharedDocument`):
  on S3 every change is a conditional write on the object's ETag, so two promotes from two
  machines never lose one another, and every gateway polls the ETag; the history is one
  object per change beside it; relative schema paths name objects beside it too
  (``platform routes apply FILE`` uploads a routes file with the schemas it names);
- a path: a routes file somewhere else, e.g. a Kubernetes ConfigMap mounted as a folder without
  ``subPath``. Polling ``stat()`` follows kubelet's ``..data`` symlink swap; a folder with
  ``..data`` is read-only here (change it with kubectl) and a write says so.

In every mode, rollback is one change of this one document.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from lorafleet.core.config import ConfigError
from lorafleet.core.fsutil import atomic_write_text
from lorafleet.core.settings import Settings

__all__ = ["RoutesSource", "FileRoutes", "StoreRoutes", "RoutesReadOnly", "open_routes", "as_source", "load_routes",
           "ROUTES_KEY"]

ROUTES_KEY = "routes/routes.yaml"
# current text ('' when absent) -> (new text, history record), or None to change nothing
Change = Callable[[str], "tuple[str, dict] | None"]


class RoutesReadOnly(ConfigError):
    """The routes document cannot be written from here (a mounted ConfigMap)."""


class RoutesSource(abc.ABC):
    """One routes document: read, polled, changed atomically, with its change history."""

    name: str  # how messages and `platform status` name it

    @abc.abstractmethod
    def signature(self) -> object | None:
        """A cheap token that changes whenever the document does; None when it does not exist."""

    @abc.abstractmethod
    def read(self) -> str:
        """The document's text; '' when it does not exist."""

    @abc.abstractmethod
    def update(self, change: Change) -> tuple[str, str, dict] | None:
        """Apply ``change`` atomically; (old text, new text, recorded entry) or None if nothing changed."""

    @abc.abstractmethod
    def history(self) -> list[dict]:
        """Every recorded change, oldest first."""

    @abc.abstractmethod
    def schema_text(self, spec: str) -> str:
        """The text of the JSON schema a route names by a relative path."""

    def schema_dir(self) -> Path | None:
        """The folder relative schema paths are read from, when the document is a file."""
        return None


class FileRoutes(RoutesSource):
    """A routes file on this machine (the home's, or a mounted ConfigMap's)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)

    @property
    def history_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".history.jsonl")

    def read_only_reason(self) -> str | None:
        if (self.path.parent / "..data").exists():
            return (f"{self.path} is a mounted ConfigMap (kubelet's ..data folder): it is read-only here; "
                    "change the ConfigMap with kubectl and every gateway follows it")
        return None

    def signature(self) -> object | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a ConfigMap's ..data swap changes the inode
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def update(self, change: Change) -> tuple[str, str, dict] | None:
        reason = self.read_only_reason()
        if reason:
            raise RoutesReadOnly(reason)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30):
            old = self.read()
            result = change(old)
            if result is None:
                return None
            new, record = result
            atomic_write_text(self.path, new)
            landed = {"at": datetime.now(UTC).isoformat(), **record}
            with open(self.history_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(landed) + "\n")
        return old, new, landed

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def schema_text(self, spec: str) -> str:
        path = Path(spec) if Path(spec).is_absolute() else self.path.parent / spec
        return path.read_text(encoding="utf-8")

    def schema_dir(self) -> Path | None:
        return self.path.parent


class StoreRoutes(RoutesSource):
    """The routes document in the registry's store, shared by every gateway and CLI that reach it."""

    def __init__(self, storage, key: str = ROUTES_KEY, where: str = "the registry") -> None:
        from lorafleet.registry.documents import SharedDocument

        self.storage, self.doc = storage, SharedDocument(storage, key)
        self.prefix = key.rpartition("/")[0]
        self.name = f"{key} in {where}"

    def signature(self) -> object | None:
        return self.doc.tag()

    def read(self) -> str:
        return self.doc.read()[0]

    def update(self, change: Change) -> tuple[str, str, dict] | None:
        return self.doc.update(change)

    def history(self) -> list[dict]:
        return self.doc.history()

    def schema_key(self, spec: str) -> str:
        if Path(spec).is_absolute() or ".." in Path(spec).parts:
            raise ConfigError(f"schema {spec!r}: with routes in the registry a schema is a path relative to the "
                              "routes document (uploaded by `platform routes apply`)")
        return f"{self.prefix}/{spec}" if self.prefix else spec

    def schema_text(self, spec: str) -> str:
        data = self.storage.get(self.schema_key(spec))
        if data is None:
            raise FileNotFoundError(f"{self.schema_key(spec)} is not in the registry "
                                    "(upload it with `platform routes apply ROUTES_FILE`)")
        return data.decode("utf-8")

    def put_schema(self, spec: str, text: str) -> None:
        self.storage.put(self.schema_key(spec), text.encode("utf-8"))


def open_routes(settings: Settings) -> RoutesSource:
    """The routes document the settings name (see the module docstring)."""
    source = settings.routes_source.strip()
    if not source:
        return FileRoutes(settings.layout.routes_file)
    if source == "registry":
        from lorafleet.registry.storage import storage_from_url

        storage = storage_from_url(settings.registry_url, settings.layout.registry, settings.s3_endpoint_url)
        return StoreRoutes(storage, where=settings.registry_url or str(settings.layout.registry))
    if "://" in source:
        raise ConfigError(f"LORAFLEET_ROUTES_SOURCE={source!r}: use `registry` (the registry's store) or a file path")
    return FileRoutes(Path(source).expanduser())


def as_source(routes: RoutesSource | Path | str) -> RoutesSource:
    """A routes source; a path stands for the routes file there."""
    return routes if isinstance(routes, RoutesSource) else FileRoutes(Path(routes))


def load_routes(routes: RoutesSource | Path | str):
    """The parsed, validated routes (a missing document means no routes); ConfigError if invalid."""
    from lorafleet.serving.routes import RoutesFile

    source = as_source(routes)
    return RoutesFile.parse_text(source.read(), source.name)
