"""The kit's compact JSON (ADR 0016): orjson, with json for what it refuses."""

from __future__ import annotations

import json

from services.common.events import EventEnvelope
from services.common.json_codec import dumps, dumps_bytes


def test_a_payload_reads_back_as_it_was_written() -> None:
    payload = {"sid": "sess-é-😀", "rn": 7, "rgs": [{"rq": 9_223_372_036_854_775_807}]}
    assert json.loads(dumps_bytes(payload)) == payload


def test_integers_past_64_bits_still_encode() -> None:
    # orjson refuses them; the reader then sees what json.dumps always wrote.
    payload = {"rq": 10**30, "neg": -(10**25)}
    assert json.loads(dumps_bytes(payload)) == payload


def test_non_string_keys_still_encode_as_json_would() -> None:
    payload = {1: "one", "two": 2}
    assert json.loads(dumps(payload)) == json.loads(json.dumps(payload))


def test_an_envelope_keeps_its_trace_context_last_and_readable_without_the_payload() -> None:
    from datetime import UTC, datetime

    envelope = EventEnvelope(
        event_id="evt-1",
        event_type="UsageRated",
        source="rating",
        aggregate_id="acct-é",
        occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
        payload={"items": [{"amount": "0.10", "note": '"trace_context":{"x":"y"}'}]},
        trace_context={"traceparent": "00-abc-def-01"},
    )
    text = envelope.to_json()
    assert json.loads(text)["payload"] == envelope.payload
    assert EventEnvelope.trace_context_of(text) == {"traceparent": "00-abc-def-01"}
