"""A shared document in the registry's store: one text object that many writers on many
machines change in place, each change a compare-and-swap on the object's tag, with the change
history kept beside it as one immutable object per change.

This is how one routes document can serve N gateways and any number of CLIs with no shared
disk: on S3 the swap is a conditional write on the ETag (``If-Match``), so two concurrent
promotes never lose one another; on a local folder it is the same swap under a lock file.
A writer that loses the race reads again and re-applies its change.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from lorafleet.registry.errors import RegistryError
from lorafleet.registry.storage import Storage

__all__ = ["SharedDocument", "DocumentChange"]

# current text ('' when absent) -> (new text, history record), or None to change nothing
DocumentChange = Callable[[str], tuple[str, dict] | None]


class SharedDocument:
    """The text at ``key`` in ``storage`` and its history under ``key + ".history/"``."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage, self.key = storage, key

    @property
    def history_prefix(self) -> str:
        return f"{self.key}.history/"

    def read(self) -> tuple[str, str | None]:
        """(text, tag); ("", None) when the document does not exist yet."""
        found = self.storage.get_tagged(self.key)
        if found is None:
            return "", None
        data, tag = found
        return data.decode("utf-8"), tag

    def tag(self) -> str | None:
        """The document's current tag (changes with every write): a cheap poll."""
        return self.storage.tag(self.key)

    def update(self, change: DocumentChange, attempts: int = 50) -> tuple[str, str, dict] | None:
        """Apply ``change`` atomically; (old text, new text, record) or None if it changed nothing.

        ``change`` may run more than once (after losing a race it sees the other writer's text)
        and may raise to refuse; the record (who, why, what) goes into the history with the
        time it landed. A crash between the swap and the history write loses that record only.
        """
        for attempt in range(attempts):
            old, tag = self.read()
            result = change(old)
            if result is None:
                return None
            new, record = result
            if self.storage.replace(self.key, new.encode("utf-8"), tag):
                landed = {"at": datetime.now(UTC).isoformat(), **record}
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
                self.storage.create(f"{self.history_prefix}{stamp}-{uuid.uuid4().hex[:8]}.json",
                                    json.dumps(landed).encode("utf-8"))
                return old, new, landed
            time.sleep(random.uniform(0.005, 0.05) * (1 + attempt))  # another writer won: read again
        raise RegistryError(f"{self.key}: gave up after {attempts} conflicting concurrent writes")

    def history(self) -> list[dict]:
        """Every recorded change, oldest first."""
        out = []
        for key in self.storage.list(self.history_prefix):
            data = self.storage.get(key)
            if data is not None:
                out.append(json.loads(data))
        return out
