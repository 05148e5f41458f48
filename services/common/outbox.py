"""The outbox relay: committed ``outbox`` rows -> Redis Streams.

Delivery is at least once. A row is marked relayed only after XADD succeeded,
so a process that dies in between relays it again on restart; consumers drop the
duplicate by event id (``processed_events``). Nothing committed is ever lost.
The relay wakes as soon as a unit of work commits events (``notify``) and also
polls, so rows committed by another process or before a crash are picked up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagate import extract
from sqlalchemy import Engine, Table, select, update

from services.common.clock import Clock
from services.common.events import EventEnvelope
from services.common.telemetry import meter, tracer

log = logging.getLogger(__name__)

# Streams are trimmed approximately; a consumer group more than this far behind loses
# nothing it has already read, but operators should alert on lag long before.
STREAM_MAXLEN = 1_000_000


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
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._redis = client
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        # One relay pass at a time per process: two concurrent passes would read the
        # same unrelayed rows and XADD them twice.
        self._passing = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relayed = meter().create_counter(
            "reckon.events.relayed", unit="{event}", description="events moved to streams"
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
        with suppress_instrumentation():
            await pipe.execute()
            await asyncio.to_thread(self._mark_relayed, [row.seq for row in rows])
        self._relayed.add(len(rows))
        return len(rows)

    def _pending(self) -> list[Any]:
        with self._engine.connect() as connection:
            return list(
                connection.execute(
                    select(
                        self._outbox.c.seq,
                        self._outbox.c.event_id,
                        self._outbox.c.event_type,
                        self._outbox.c.stream,
                        self._outbox.c.envelope,
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
