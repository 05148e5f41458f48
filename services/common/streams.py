"""Event consumers: Redis Streams consumer groups with at-least-once delivery.

A message is acknowledged only after its handler returned, so a consumer that
dies mid-handling leaves it pending; ``XAUTOCLAIM`` hands such messages to a live
consumer of the group after ``claim_idle_ms``. Handlers make redelivery harmless
by recording the event id in their own transaction (``UnitOfWork.mark_processed``).
A message that keeps failing goes to a dead-letter stream after ``max_deliveries``
attempts instead of blocking the group forever.

Each handled event runs inside a ``reckon.event.consume`` span whose parent is
the trace context carried in the envelope: the consumer joins the producer's trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract
from redis.exceptions import ResponseError

from services.common.events import EventEnvelope
from services.common.telemetry import meter, tracer

log = logging.getLogger(__name__)

EventHandler = Callable[[EventEnvelope], Awaitable[None]]
# Takes the envelopes one read returned, all at once (a mass process works set-based);
# idempotent per event like a handler, since a failed batch is handled again one by one.
BatchHandler = Callable[[list[EventEnvelope]], Awaitable[None]]
DEAD_LETTER_STREAM = "reckon:events:dead-letter"
# How often a consumer samples its groups' lag for the consumer_lag gauge.
LAG_SAMPLE_SECONDS = 15.0


class StreamConsumer:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        group: str,
        streams: Sequence[str],
        handler: EventHandler,
        event_types: Collection[str] | None = None,
        consumer_name: str | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 10,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self._redis = client
        self.group = group
        self._streams = list(streams)
        self._handler = handler
        self._batch_handler = batch_handler
        self._event_types = set(event_types) if event_types is not None else None
        self.consumer_name = consumer_name or f"{group}-{socket.gethostname()}-{os.getpid()}"
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._handled = meter().create_counter(
            "reckon.events.consumed", unit="{event}", description="events handled by consumers"
        )
        self._failed = meter().create_counter(
            "reckon.events.failed", unit="{event}", description="event handler failures"
        )
        self._dead_lettered = meter().create_counter(
            "reckon.events.dead_lettered",
            unit="{event}",
            description="events moved to the dead-letter stream, by group and reason",
        )
        # Entries of each stream not yet delivered to this group (XINFO GROUPS "lag"),
        # sampled by the consume loop and read by the exporter.
        self._lag: dict[str, int] = {}
        self._next_lag_sample = 0.0
        meter().create_observable_gauge(
            "reckon.events.consumer_lag",
            callbacks=[self._observe_lag],
            unit="{event}",
            description="stream entries not yet delivered to the consumer group",
        )

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            try:
                # From the stream's start: a new consumer group sees the history once.
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_groups()
        while not stop.is_set():
            try:
                await self.consume_once()
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("event consumer %s failed; retrying", self.group)
                    await asyncio.sleep(1)
                    continue
                # Redis lost the group (flushed, or restarted without its data): without
                # it every read fails forever and no event is handled again. Recreated
                # from the stream's start, so events published since the loss are seen;
                # handlers are idempotent by event id, so none counts twice.
                log.warning("event consumer %s: group lost in Redis; recreating", self.group)
                await self.ensure_groups()
            except Exception:
                log.exception("event consumer %s failed; retrying", self.group)
                await asyncio.sleep(1)

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        for stream, lag in list(self._lag.items()):
            yield Observation(lag, {"stream": stream, "group": self.group})

    async def sample_lag(self) -> None:
        """Read each stream's lag for this group (Redis 7+; older servers report none)."""
        with suppress_instrumentation():
            for stream in self._streams:
                try:
                    groups: Any = await self._redis.xinfo_groups(stream)
                except ResponseError:  # the stream does not exist yet
                    continue
                for info in groups:
                    name = info.get("name")
                    name = name.decode() if isinstance(name, bytes) else name
                    if name == self.group and info.get("lag") is not None:
                        self._lag[stream] = int(info["lag"])

    async def consume_once(self, block_ms: int | None = None) -> int:
        """Handle reclaimed and new messages once; returns how many were handled."""
        now = time.monotonic()
        if now >= self._next_lag_sample:
            self._next_lag_sample = now + LAG_SAMPLE_SECONDS
            await self.sample_lag()
        count = 0
        for stream in self._streams:
            with suppress_instrumentation():  # idle polls must not start traces
                claimed: Any = await self._redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer_name,
                    min_idle_time=self._claim_idle_ms,
                    start_id="0-0",
                    count=self._batch_size,
                )
            for message_id, fields in claimed[1]:
                if fields:  # entries trimmed from the stream come back empty
                    await self._handle(stream, message_id, fields)
                    count += 1
        with suppress_instrumentation():
            response: Any = await self._redis.xreadgroup(
                self.group,
                self.consumer_name,
                dict.fromkeys(self._streams, ">"),
                count=self._batch_size,
                block=self._block_ms if block_ms is None else block_ms,
            )
        for stream, messages in response or []:
            if self._batch_handler is not None and len(messages) > 1:
                await self._handle_batch(stream, messages)
                count += len(messages)
                continue
            for message_id, fields in messages:
                await self._handle(stream, message_id, fields)
                count += 1
        return count

    async def _handle_batch(self, stream: Any, messages: list[tuple[Any, Any]]) -> None:
        """New messages of one read to the batch handler; on failure, one by one."""
        assert self._batch_handler is not None
        ours: list[tuple[Any, Any, EventEnvelope]] = []
        for message_id, fields in messages:
            raw: Any = fields.get(b"envelope") or fields.get("envelope")
            try:
                envelope = EventEnvelope.from_json(raw)
            except (TypeError, ValueError, KeyError):
                envelope = None
            if envelope is None or (
                self._event_types is not None and envelope.event_type not in self._event_types
            ):
                await self._handle(stream, message_id, fields)  # dead-letters or acks it
            else:
                ours.append((message_id, fields, envelope))
        # One handler call per producer trace, as a child of it: a bill run's invoices
        # (one trace) stay one batch, and work from different traces is never folded
        # into a trace that is not its own (every hop of a story stays in its trace).
        by_trace: dict[int, list[tuple[Any, Any, EventEnvelope]]] = {}
        for entry in ours:
            producer = trace.get_current_span(extract(entry[2].trace_context)).get_span_context()
            key = producer.trace_id if producer.is_valid else 0  # untraced: together
            by_trace.setdefault(key, []).append(entry)
        for group in by_trace.values():
            await self._handle_group(stream, group)

    async def _handle_group(self, stream: Any, group: list[tuple[Any, Any, EventEnvelope]]) -> None:
        """Messages of one producer trace to the batch handler; on failure, one by one."""
        assert self._batch_handler is not None
        first = group[0][2]
        types = {envelope.event_type for _, _, envelope in group}
        # Named like a single event's span when the batch is of one type (a bill run's
        # InvoiceIssued): a reader of the trace finds "consume InvoiceIssued" whether the
        # event came alone or beside others (OTel messaging: the operation, not the count).
        name = (
            f"reckon.event.consume {first.event_type}"
            if len(types) == 1
            else f"reckon.event.consume batch of {len(group)}"
        )
        with tracer().start_as_current_span(
            name,
            context=extract(first.trace_context),
            kind=trace.SpanKind.CONSUMER,
            # The first producer is the parent; the others of the trace are linked.
            links=[
                trace.Link(span_context)
                for _, _, e in group[1:]
                if (
                    span_context := trace.get_current_span(
                        extract(e.trace_context)
                    ).get_span_context()
                ).is_valid
            ],
            attributes={
                "messaging.system": "redis",
                "messaging.operation": "process",
                "messaging.consumer.group.name": self.group,
                "messaging.batch.message_count": len(group),
                "reckon.event.types": sorted(types),
            },
        ) as span:
            try:
                await self._batch_handler([e for _, _, e in group])
            except Exception as exc:  # noqa: BLE001 - any failure: each message on its own
                span.record_exception(exc)
                log.warning("batch handler %s failed (%s); one by one", self.group, exc)
                for message_id, fields, _ in group:
                    await self._handle(stream, message_id, fields)
                return
            await self._redis.xack(stream, self.group, *[m for m, _, _ in group])
        for _, _, envelope in group:
            self._handled.add(1, {"group": self.group, "type": envelope.event_type})

    async def _handle(self, stream: Any, message_id: Any, fields: dict[Any, Any]) -> None:
        raw: Any = fields.get(b"envelope") or fields.get("envelope")
        try:
            envelope = EventEnvelope.from_json(raw)
        except (TypeError, ValueError, KeyError):
            log.error("malformed event %s on %s; dead-lettered", message_id, stream)
            await self._dead_letter(stream, message_id, fields, "malformed envelope")
            return
        if self._event_types is not None and envelope.event_type not in self._event_types:
            with suppress_instrumentation():  # not ours: no trace of it
                await self._redis.xack(stream, self.group, message_id)
            return
        with tracer().start_as_current_span(
            f"reckon.event.consume {envelope.event_type}",
            context=extract(envelope.trace_context),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.operation": "process",
                "messaging.consumer.group.name": self.group,
                "reckon.event.id": envelope.event_id,
                "reckon.event.type": envelope.event_type,
            },
        ) as span:
            try:
                await self._handler(envelope)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                self._failed.add(1, {"group": self.group, "type": envelope.event_type})
                log.exception("handler %s failed for %s", self.group, envelope.event_id)
                await self._maybe_dead_letter(stream, message_id, fields, str(exc))
                return
            await self._redis.xack(stream, self.group, message_id)
        self._handled.add(1, {"group": self.group, "type": envelope.event_type})

    async def _maybe_dead_letter(
        self, stream: Any, message_id: Any, fields: dict[Any, Any], reason: str
    ) -> None:
        pending: Any = await self._redis.xpending_range(
            stream, self.group, min=message_id, max=message_id, count=1
        )
        if pending and pending[0]["times_delivered"] >= self._max_deliveries:
            await self._dead_letter(stream, message_id, fields, reason)

    async def _dead_letter(
        self, stream: Any, message_id: Any, fields: dict[Any, Any], reason: str
    ) -> None:
        self._dead_lettered.add(1, {"group": self.group, "stream": str(stream)})
        await self._redis.xadd(
            DEAD_LETTER_STREAM,
            {
                **fields,
                "stream": stream,
                "group": self.group,
                "message_id": message_id,
                "reason": reason[:500],
            },
        )
        await self._redis.xack(stream, self.group, message_id)
