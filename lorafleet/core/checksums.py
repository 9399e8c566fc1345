"""Checksums of identifiers found in text: the Luhn check that tells a card number from any digit run.

Both the gateway's PII guardrail and training's safety suite use it (neither imports the other).
"""

from __future__ import annotations

__all__ = ["luhn_valid"]


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (payment card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
