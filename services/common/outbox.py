"""The outbox relay: committed ``outbox`` rows -> Redis Streams.

Delivery is at least once. A row is marked relayed only after XADD succeeded,
so a process that dies in between relays it again on restart; consumers drop the
duplicate by event id (``processed_events``). Nothing committed is ever lost.
The relay wakes as soon as a unit of work commits events (``notify``) and also
polls, so rows committed by another process or before a crash are picked up.

Redis may lose what it held (FLUSHALL, a restart without persistence or from an
older snapshot, a failover): events already in a stream but not yet read by every
consumer group would then be gone, although their rows say "relayed". So each
XADD pipeline also raises a per-stream *relay mark* in Redis, the highest outbox
``seq`` put in that stream, and every pass compares it with the highest ``seq``
this process knows was relayed. A missing or lower mark means Redis lost data:
the rows relayed since the mark (within ``retention``) are marked unrelayed again
and re-sent in ``seq`` order with their original envelopes and event ids;
consumers skip ids they already processed (ADR 0017). Relayed rows are kept for
``retention`` and pruned after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, Row, Table, delete, func, select, update

from services.common.clock import Clock
from services.common.events import EventEnvelope
from services.common.telemetry import meter, tracer

log = logging.getLogger(__name__)

# Streams are trimmed approximately; a consumer group more than this far behind loses
# nothing it has already read, but operators should alert on lag long before.
STREAM_MAXLEN = 1_000_000
# How long relayed rows stay replayable after Redis lost its data; pruned after it.
DEFAULT_RETENTION = timedelta(hours=24)
# Pruning is housekeeping: once in a while is enough, not every pass.
PRUNE_INTERVAL = timedelta(minutes=10)
_MARK_MEMBER = "seq"


def relay_mark_key(stream: str) -> str:
    """The sorted set whose one member's score is the highest outbox seq put in ``stream``."""
    return f"{stream}:relay-mark"


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        outbox: Table,
        client: aioredis.Redis,
        clock: Clock,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("outbox retention must be positive")
        self._engine = engine
        self._outbox = outbox
        self._redis = client
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention = retention
        # Highest seq per stream this process knows is relayed (read from the outbox at
        # the first pass, then raised by each pass): what Redis must still hold.
        self._relayed_through: dict[str, int] | None = None
        self._next_prune = clock.now()
        self._wake = asyncio.Event()
        # One relay pass at a time per process: two concurrent passes would read the
        # same unrelayed rows and XADD them twice.
        self._passing = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relayed = meter().create_counter(
            "reckon.events.relayed", unit="{event}", description="events moved to streams"
        )
        self._relay_lag = meter().create_histogram(
            "reckon.outbox.relay_lag",
            unit="s",
            description="time from an event's commit to its relay onto the stream",
        )
        meter().create_observable_gauge(
            "reckon.outbox.backlog",
            callbacks=[self._observe_backlog],
            unit="{event}",
            description="events committed but not yet relayed",
        )
        self._replayed = meter().create_counter(
            "reckon.events.replayed",
            unit="{event}",
            description="relayed events queued again because Redis lost them",
        )

    def notify(self) -> None:
        """Wake the relay; safe to call from any thread (units of work commit in threads)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                moved = await self.relay_once()
            except RedisConnectionError as exc:
                # Every pass reads the relay marks, idle ones too: while Redis is down or
                # loading, say so once per pass without a traceback (ADR 0015).
                log.warning("outbox relay: Redis unavailable (%s); retrying", exc)
                moved = 0
            except Exception:
                log.exception("outbox relay failed; retrying")
                moved = 0
            if moved < self._batch_size:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self._poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()

    async def relay_once(self) -> int:
        async with self._passing:
            return await self._relay_pass()

    async def _relay_pass(self) -> int:
        # Polling is bookkeeping: only the per-event relay spans belong in traces,
        # otherwise every idle poll would start a trace of its own.
        with suppress_instrumentation():
            if self._relayed_through is None:
                self._relayed_through = await asyncio.to_thread(self._relayed_high_water)
            await self._requeue_if_redis_lost(self._relayed_through)
            if self._clock.now() >= self._next_prune:
                await asyncio.to_thread(self._prune)
                self._next_prune = self._clock.now() + PRUNE_INTERVAL
            rows = await asyncio.to_thread(self._pending)
        if not rows:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            # Only the trace context: decoding a batched event's payload is not needed here.
            trace_context = EventEnvelope.trace_context_of(row.envelope)
            with tracer().start_as_current_span(
                f"reckon.event.relay {row.event_type}",
                context=extract(trace_context),
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.destination.name": row.stream,
                    "reckon.event.id": row.event_id,
                },
            ):
                pipe.xadd(
                    row.stream, {"envelope": row.envelope}, maxlen=STREAM_MAXLEN, approximate=True
                )
        top = _highest_seq_per_stream(rows)
        for stream, seq in top.items():
            # After the XADDs in the same pipeline: Redis applies and persists commands
            # in order, so a mark that survived implies the entries up to it did too.
            # GT: a concurrent relay with a lower batch never lowers the mark.
            pipe.zadd(relay_mark_key(stream), {_MARK_MEMBER: seq}, gt=True)
        with suppress_instrumentation():
            await pipe.execute()
            await asyncio.to_thread(self._mark_relayed, [row.seq for row in rows])
        for stream, seq in top.items():
            self._relayed_through[stream] = max(self._relayed_through.get(stream, 0), seq)
        self._relayed.add(len(rows))
        now = self._clock.now()
        for row in rows:
            # SQLite hands back the stored UTC instant without its zone.
            created = row.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            self._relay_lag.record(max((now - created).total_seconds(), 0.0))
        return len(rows)

    def _observe_backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        # Runs on the exporter's thread at each collection (every few seconds at most):
        # one indexed count, ix_outbox_unrelayed.
        try:
            with self._engine.connect() as connection:
                backlog = connection.execute(
                    select(func.count()).where(self._outbox.c.relayed_at.is_(None))
                ).scalar_one()
        except Exception:  # a metric must never break the exporter
            log.debug("outbox backlog unavailable", exc_info=True)
            return
        yield Observation(int(backlog), {"table": self._outbox.fullname})

    async def _requeue_if_redis_lost(self, relayed_through: dict[str, int]) -> None:
        streams = [stream for stream, seq in relayed_through.items() if seq > 0]
        if not streams:
            return
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.zscore(relay_mark_key(stream), _MARK_MEMBER)
        marks: list[Any] = await pipe.execute()
        for stream, mark in zip(streams, marks, strict=True):
            kept = int(mark) if mark is not None else 0
            if kept >= relayed_through[stream]:
                continue
            count = await asyncio.to_thread(self._requeue, stream, kept)
            log.warning(
                "Redis lost %s past outbox seq %d (relayed through %d); re-sending %d events",
                stream,
                kept,
                relayed_through[stream],
                count,
            )
            # Detected once per loss: from here on only this pass's re-sends raise it
            # again, so relays in several processes re-send at most once each.
            relayed_through[stream] = kept
            self._replayed.add(count, {"stream": stream})

    def _relayed_high_water(self) -> dict[str, int]:
        outbox = self._outbox
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.stream, func.max(outbox.c.seq))
                .where(outbox.c.relayed_at.is_not(None))
                .group_by(outbox.c.stream)
            )
            return {stream: int(seq) for stream, seq in rows}

    def _requeue(self, stream: str, kept: int) -> int:
        """Mark rows relayed after ``kept`` (within the retention) unrelayed again."""
        outbox = self._outbox
        with self._engine.begin() as connection:
            result = connection.execute(
                update(outbox)
                .where(
                    outbox.c.stream == stream,
                    outbox.c.seq > kept,
                    outbox.c.relayed_at >= self._clock.now() - self._retention,
                )
                .values(relayed_at=None)
            )
            return int(result.rowcount)

    def _prune(self) -> None:
        # Only rows relayed before the retention window: newer ones may be re-sent.
        with self._engine.begin() as connection:
            connection.execute(
                delete(self._outbox).where(
                    self._outbox.c.relayed_at < self._clock.now() - self._retention
                )
            )

    def _pending(self) -> list[Row[Any]]:
        with self._engine.connect() as connection:
            return list(
                connection.execute(
                    select(
                        self._outbox.c.seq,
                        self._outbox.c.event_id,
                        self._outbox.c.event_type,
                        self._outbox.c.stream,
                        self._outbox.c.envelope,
                        self._outbox.c.created_at,
                    )
                    .where(self._outbox.c.relayed_at.is_(None))
                    .order_by(self._outbox.c.seq)
                    .limit(self._batch_size)
                )
            )

    def _mark_relayed(self, seqs: list[int]) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(self._outbox)
                .where(self._outbox.c.seq.in_(seqs))
                .values(relayed_at=self._clock.now())
            )


def _highest_seq_per_stream(rows: Sequence[Row[Any]]) -> dict[str, int]:
    top: dict[str, int] = {}
    for row in rows:
        top[row.stream] = max(top.get(row.stream, 0), int(row.seq))
    return top
