"""Identifiers: time-ordered, prefixed with the resource kind (``cus_``, ``acc_``, ...).

Prefixes make an id self-describing in logs and support tickets; time order keeps
B-tree inserts local and lists naturally sorted by creation.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """A 26-character ULID-style id: 48 bits of milliseconds then 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # Two digits (10 bits) at a time, most significant first: the same text as 26
    # divmods by 32, in a third of the time (bill runs make three ids an invoice).
    return f"{prefix}_{''.join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])}"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
