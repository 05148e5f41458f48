"""Identifiers: time-ordered, prefixed with the resource kind (``cus_``, ``acc_``, ...).

Prefixes make an id self-describing in logs and support tickets; time order keeps
B-tree inserts local and lists naturally sorted by creation.
"""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# RFC 4648 base32 digits to Crockford's: the C-coded encoder does the digit loop
# (mass processes make tens of thousands of ids a second; ADR 0070).
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_id(prefix: str) -> str:
    """A 26-character ULID-style id: 48 bits of milliseconds then 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 26 digits are 130 bits: shifted to the top of 17 bytes, the first 26 base32 digits
    # of those bytes are the value's, most significant first.
    digits = base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_CROCKFORD)
    return f"{prefix}_{digits.decode()}"
