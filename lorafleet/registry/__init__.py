"""Immutable, versioned adapter artifacts and the identities of base models.

Depends on nothing else in lorafleet but ``lorafleet.core``.
"""
