"""Compact JSON for hot paths: orjson, with the standard library as the fallback.

orjson encodes the dicts and lists our scripts and event envelopes carry several
times faster than ``json.dumps`` (ADR 0016: a fifth of the cost on charging's script
payloads; the encoding of batched ``UsageRated`` envelopes was ~12% of an import's
held GIL). It refuses what ``json`` accepts in a few corners (integers past 64 bits,
non-string keys); those take ``json``, so nothing that encoded before fails now.
The output is compact and UTF-8 (no ``\\u`` escapes); readers parse either the same.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, keys in insertion order."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, keys in insertion order."""
    return dumps_bytes(value).decode()
