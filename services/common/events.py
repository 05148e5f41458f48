"""Domain events and the envelope they travel in.

A domain event is a frozen dataclass naming a fact in the past tense
(``AccountCreated``). Handlers hand events to their unit of work, which writes
them to the outbox in the same transaction as the change. The envelope adds the
event id (for idempotent consumers), the producing service and the W3C trace
context, so the consumer's spans join the producer's trace.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

from services.common.json_codec import dumps
from services.common.money import Money


@dataclass(frozen=True)
class DomainEvent:
    """Base of all events. Subclasses set ``event_type`` and ``aggregate_field``."""

    event_type: ClassVar[str] = ""
    # The field that identifies the aggregate; consumers use it for ordering and logs.
    aggregate_field: ClassVar[str] = ""

    @property
    def aggregate_id(self) -> str:
        return str(getattr(self, self.aggregate_field, "")) if self.aggregate_field else ""

    def payload(self) -> dict[str, Any]:
        return {name: to_jsonable(getattr(self, name)) for name in _field_names(type(self))}


def _field_names(cls: type[DomainEvent]) -> tuple[str, ...]:
    # dataclasses.fields() walks the class each call; events are made in bulk (bill runs).
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


_FIELD_NAMES: dict[type[DomainEvent], tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """JSON-safe form that keeps money and decimals exact (as strings)."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class EventEnvelope:
    event_id: str
    event_type: str
    source: str
    aggregate_id: str
    occurred_at: datetime
    payload: dict[str, Any]
    trace_context: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        # Compact, keys in this order (``trace_context_of`` relies on it being last).
        return dumps(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "source": self.source,
                "aggregate_id": self.aggregate_id,
                "occurred_at": self.occurred_at.isoformat(),
                "payload": self.payload,
                "trace_context": self.trace_context,
            }
        )

    @staticmethod
    def trace_context_of(text: str | bytes) -> dict[str, str]:
        """The ``trace_context`` of an encoded envelope, without decoding its payload.

        The relay needs only this to continue the producer's trace, and a batched
        event's payload can be hundreds of KB: decoding it all would cost more than
        the rest of relaying. ``to_json`` writes ``trace_context`` last, and inside a
        JSON string a quote is always escaped, so the last ``"trace_context":`` of the
        text is that key. Anything else (another writer's key order) is decoded in full.
        """
        raw = text.decode() if isinstance(text, bytes) else text
        key = raw.rfind(_TRACE_KEY)
        if key >= 0 and raw.endswith("}"):
            try:
                context = json.loads(raw[key + len(_TRACE_KEY) : -1])
            except ValueError:
                context = None
            if isinstance(context, dict):
                return {str(k): str(v) for k, v in context.items()}
        found = json.loads(raw).get("trace_context", {})
        return found if isinstance(found, dict) else {}

    @classmethod
    def from_json(cls, text: str | bytes) -> EventEnvelope:
        raw = json.loads(text)
        return cls(
            event_id=raw["event_id"],
            event_type=raw["event_type"],
            source=raw["source"],
            aggregate_id=raw.get("aggregate_id", ""),
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            payload=raw["payload"],
            trace_context=raw.get("trace_context", {}),
        )


_TRACE_KEY = '"trace_context":'
_PLAIN = (str, int, bool, float)


def stream_for(source_service: str) -> str:
    """Each service publishes to one stream; consumers pick events by type."""
    return f"reckon:events:{source_service}"
