"""Immutable, versioned adapter artifacts and the identities of base models.

Depends on nothing else in lorafleet but ``lorafleet.core``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorafleet.registry.compat import check_compatibility
from lorafleet.registry.fingerprint import TOKEN_LENGTH_EDGES, TURN_EDGES, Fingerprint, Histogram, histogram, psi
from lorafleet.registry.manifest import AdapterManifest, AuditEntry
from lorafleet.registry.store import Registry, parse_ref

if TYPE_CHECKING:
    from lorafleet.core.settings import Settings

__all__ = ["open_registry", "Registry", "AdapterManifest", "AdapterRef", "AuditEntry", "Fingerprint", "Histogram",
           "TOKEN_LENGTH_EDGES", "TURN_EDGES", "histogram", "psi", "check_compatibility", "parse_ref"]

AdapterRef = str  # "name@N", "name@alias" or "name"


def open_registry(settings: Settings) -> Registry:
    """The registry the settings name: the home's folder, or ``s3://bucket/prefix``."""
    from lorafleet.registry.storage import storage_from_url

    storage = storage_from_url(settings.registry_url, settings.layout.registry, settings.s3_endpoint_url)
    return Registry(storage, settings.layout.cache)
