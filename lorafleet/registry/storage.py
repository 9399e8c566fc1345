"""Storage backends of the registry: one abstract interface, a local folder and an
S3-compatible object store.

Everything the registry needs from storage is a flat key space with four operations;
the one that makes versions safe under concurrency is ``create``: write an object only if
it does not exist yet, atomically (a hard link on a local disk, ``If-None-Match: *`` on S3).
Documents that many writers change in place (the shared routes document) use ``get_tagged``
and ``replace``: a compare-and-swap on a content tag (the ETag with ``If-Match`` on S3; a
content hash under a lock file on a local disk), so no writer ever loses another's change.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lorafleet.registry.errors import RegistryError

__all__ = ["Storage", "LocalStorage", "S3Storage", "storage_from_url"]


class Storage(abc.ABC):
    """A flat key -> bytes store. Keys use '/' and never start with it."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist; True if this call created it."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write (or replace) ``key`` atomically: readers see the old or the new bytes."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file to ``key``."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes of ``key``, or None."""

    @abc.abstractmethod
    def get_file(self, key: str, dest: Path) -> bool:
        """Download ``key`` to ``dest``; False if it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Remove keys (missing ones are fine)."""

    @abc.abstractmethod
    def modified_at(self, key: str) -> float | None:
        """Last-modified time of ``key`` (epoch seconds), or None."""

    @abc.abstractmethod
    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The bytes of ``key`` and a tag that changes whenever they do, or None."""

    @abc.abstractmethod
    def tag(self, key: str) -> str | None:
        """The current tag of ``key`` without its bytes (a cheap change check), or None."""

    @abc.abstractmethod
    def replace(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """Write ``key`` only if its tag is still ``expected_tag`` (None: only if it does not
        exist); True if this call wrote it, False if another writer got there first."""

    def local_path(self, key: str) -> Path | None:
        """A readable local path of ``key`` if the backend has one (no copy needed)."""
        return None

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` of each key, in order (a remote backend reads them at once)."""
        return [self.get(k) for k in keys]

    def get_files(self, pairs: list[tuple[str, Path]]) -> list[bool]:
        """:meth:`get_file` of each (key, dest), in order (a remote backend downloads them at once)."""
        return [self.get_file(k, dest) for k, dest in pairs]


class LocalStorage(Storage):
    """Keys are files under ``root``; writes go to a temporary file first."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise RegistryError(f"unsafe storage key {key!r}")
        return self.root / key

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """A failed write (read-only or full filesystem, permissions) is a RegistryError on one line."""
        try:
            yield
        except OSError as err:
            raise RegistryError(f"cannot write {key} under {self.root}: {err.strerror or err}") from err

    @contextlib.contextmanager
    def _temp(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        for attempt in range(3):  # a concurrent delete may prune the folder between the two calls
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        os.close(fd)
        try:
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def create(self, key: str, data: bytes) -> bool:
        with self._writing(key), self._temp(key) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
            _fsync(tmp)
            try:
                os.link(tmp, self._path(key))  # atomic and exclusive
            except FileExistsError:
                return False
            return True

    def put(self, key: str, data: bytes) -> None:
        with self._writing(key), self._temp(key) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
            _fsync(tmp)
            os.replace(tmp, self._path(key))

    def put_file(self, key: str, path: Path) -> None:
        with self._writing(key), self._temp(key) as tmp:
            shutil.copyfile(path, tmp)
            os.chmod(tmp, 0o644)
            _fsync(tmp)
            os.replace(tmp, self._path(key))

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get_file(self, key: str, dest: Path) -> bool:
        src = self._path(key)
        if not src.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return True

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith((".tmp-", ".lock-")))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            for parent in path.parents:  # drop folders left empty (a removed blob's)
                if parent == self.root or self.root not in parent.parents:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break

    def modified_at(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def tag(self, key: str) -> str | None:
        found = self.get_tagged(key)
        return None if found is None else found[1]

    def replace(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        from filelock import FileLock

        path = self._path(key)
        with self._writing(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path.with_name(f".lock-{path.name}")), timeout=30):
                if self.tag(key) != expected_tag:
                    return False
                self.put(key, data)
                return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


S3_READS_AT_ONCE = 8  # one lookup's or one download's reads in flight together
S3_CONNECTIONS = 64  # per client (botocore's default of 10 is below an engine's concurrent fetches x reads)
_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE")


@functools.lru_cache(maxsize=16)
def _s3_client(endpoint_url: str | None, *_credentials: str | None):
    """One boto3 client per endpoint and credentials in a process (clients are thread-safe; making
    one costs about 30 ms, and one CLI command opens the registry and the routes document)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                                       max_pool_connections=S3_CONNECTIONS))


def _at_once(fn, items: list) -> list:
    """``fn`` over ``items``, one thread each (every call is a wait on a round trip to the store); in order."""
    if len(items) < 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(len(items), S3_READS_AT_ONCE)) as pool:
        return list(pool.map(fn, items))


class S3Storage(Storage):
    """Keys are objects under ``s3://bucket/prefix`` on any S3-compatible store."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = _s3_client(endpoint_url, *(os.environ.get(k) for k in _AWS_ENV))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _failing_as(self, what: str, key: str) -> Iterator[None]:
        """An S3 failure (no such bucket, access denied, endpoint unreachable) is a RegistryError
        on one line that names the object, like a failed write on the local folder."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self._key(key)}"
        try:
            yield
        except ClientError as err:
            e = err.response.get("Error", {})
            raise RegistryError(f"cannot {what} {where}: {e.get('Code')}: {e.get('Message')}") from None
        except (BotoCoreError, Boto3Error) as err:
            raise RegistryError(f"cannot {what} {where}: {err}") from None

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._failing_as("write", key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            except ClientError as err:
                if err.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        return True

    def put(self, key: str, data: bytes) -> None:
        with self._failing_as("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        with self._failing_as("write", key):
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        with self._failing_as("read", key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as err:
                if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise

    def get_file(self, key: str, dest: Path) -> bool:
        data = self.get(key)
        if data is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return True

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return _at_once(self.get, keys)

    def get_files(self, pairs: list[tuple[str, Path]]) -> list[bool]:
        return _at_once(lambda pair: self.get_file(*pair), pairs)

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        cut = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        with self._failing_as("list", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [o["Key"][cut:] for o in page.get("Contents", [])]
        return sorted(keys)

    def modified_at(self, key: str) -> float | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["LastModified"].timestamp()
        except ClientError:
            return None

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        with self._failing_as("read", key):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as err:
                if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise
            return obj["Body"].read(), obj["ETag"]

    def tag(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        with self._failing_as("read", key):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"]
            except ClientError as err:
                if err.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise

    def replace(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        from botocore.exceptions import ClientError

        if expected_tag is None:
            return self.create(key, data)
        with self._failing_as("write", key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=expected_tag)
            except ClientError as err:
                if err.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey",
                                                     "404"):
                    return False
                raise
        return True

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[i:i + 1000]]
            if chunk:
                with self._failing_as("delete", keys[i]):
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})


def storage_from_url(url: str | None, local_root: Path, endpoint_url: str | None = None) -> Storage:
    """``None`` -> the local folder; ``s3://bucket/prefix`` -> S3 (``endpoint_url`` for MinIO/moto)."""
    if not url:
        return LocalStorage(local_root)
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3Storage(bucket, prefix, endpoint_url)
    if url.startswith("file://") or url.startswith("/"):
        return LocalStorage(Path(url.removeprefix("file://")))
    from lorafleet.core.errors import InputError

    raise InputError("LORAFLEET_REGISTRY_URL", url, "use s3://bucket/prefix or a local path")

