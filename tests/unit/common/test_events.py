"""The envelope's trace context is read back without decoding the payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.common.events import EventEnvelope


def _envelope(payload: dict[str, Any], context: dict[str, str]) -> EventEnvelope:
    return EventEnvelope(
        "evt-1", "UsageRated", "rating", "imp-1", datetime(2026, 3, 1, tzinfo=UTC), payload, context
    )


def test_trace_context_of_matches_a_full_decode() -> None:
    context = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    # A payload that itself holds the key, as a key and inside a string, must not confuse it.
    payload = {
        "records": [{"trace_context": {"traceparent": "forged"}, "note": '"trace_context":{}'}]
    }
    text = _envelope(payload, context).to_json()
    assert EventEnvelope.trace_context_of(text) == context
    assert EventEnvelope.trace_context_of(text.encode()) == context
    assert EventEnvelope.trace_context_of(text) == EventEnvelope.from_json(text).trace_context


def test_trace_context_of_empty_and_other_key_orders() -> None:
    assert EventEnvelope.trace_context_of(_envelope({"a": 1}, {}).to_json()) == {}
    reordered = json.dumps({"trace_context": {"traceparent": "x"}, "payload": {"n": 1}})
    assert EventEnvelope.trace_context_of(reordered) == {"traceparent": "x"}
    assert EventEnvelope.trace_context_of(json.dumps({"payload": {}})) == {}
