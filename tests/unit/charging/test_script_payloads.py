"""The Lua scripts' JSON arguments (ADR 0016): orjson, with json for what it refuses."""

from __future__ import annotations

import json

from services.charging.adapters.redis_store import _dumps


def test_a_payload_reads_back_as_it_was_written() -> None:
    payload = {"sid": "sess-é-😀", "rn": 7, "rgs": [{"rq": 9_223_372_036_854_775_807}]}
    assert json.loads(_dumps(payload)) == payload


def test_integers_past_64_bits_still_encode() -> None:
    # orjson refuses them; the script then sees what json.dumps always wrote.
    payload = {"rq": 10**30, "neg": -(10**25)}
    assert json.loads(_dumps(payload)) == payload
