"""Outbox -> Redis Streams -> consumer groups: durable, idempotent, traced.

Runs on SQLite and PostgreSQL against a real Redis server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import ManualClock
from services.common.db import KitTables, add_kit_tables, make_engine
from services.common.events import DomainEvent, EventEnvelope, stream_for
from services.common.outbox import OutboxRelay
from services.common.sql_uow import SqlUnitOfWork
from services.common.streams import DEAD_LETTER_STREAM, StreamConsumer
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase

metadata = MetaData()
KIT = add_kit_tables(metadata)
tallies = Table(
    "tallies",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
)


@dataclass(frozen=True)
class Counted(DomainEvent):
    event_type = "Counted"
    aggregate_field = "name"
    name: str


class TallyUnitOfWork(SqlUnitOfWork):
    def bump(self, name: str) -> None:
        self.session.execute(insert(tallies).values(name=f"{name}-{id(self)}", count=1))


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # Nothing installed yet in this process: install an SDK provider. Otherwise
        # (another test set telemetry up) the exporter joins the existing one.
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def unit_of_work(
    engine: Engine, clock: ManualClock, relay: OutboxRelay | None = None
) -> TallyUnitOfWork:
    return TallyUnitOfWork(
        sessionmaker(engine, class_=Session),
        KIT,
        source="tally",
        clock=clock,
        after_commit=relay.notify if relay else None,
    )


def outbox_count(engine: Engine, *, relayed: bool | None = None) -> int:
    query = select(func.count()).select_from(KIT.outbox)
    if relayed is not None:
        column = KIT.outbox.c.relayed_at
        query = query.where(column.is_not(None) if relayed else column.is_(None))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def test_events_are_written_only_with_the_commit(engine: Engine) -> None:
    clock = ManualClock()
    with unit_of_work(engine, clock) as uow:
        uow.bump("a")
        uow.publish(Counted("a"))
        # no commit: leaving the block rolls back the change and its event together
    assert outbox_count(engine) == 0
    with unit_of_work(engine, clock) as uow:
        uow.bump("a")
        uow.publish(Counted("a"))
        uow.commit()
    assert outbox_count(engine, relayed=False) == 1


async def test_relay_moves_each_event_to_the_stream_once(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock, batch_size=3)
    for name in "abcdefg":
        with unit_of_work(engine, clock) as uow:
            uow.publish(Counted(name))
            uow.commit()
    while await relay.relay_once():
        pass
    assert outbox_count(engine, relayed=False) == 0
    entries = await redis_client.xrange(stream_for("tally"))
    names = [
        EventEnvelope.from_json(fields[b"envelope"]).payload["name"]
        for _, fields in entries or []
        if fields
    ]
    assert names == list("abcdefg")  # commit order preserved


async def test_relay_crash_before_marking_redelivers_and_consumer_dedupes(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    with unit_of_work(engine, clock) as uow:
        uow.publish(Counted("x"))
        uow.commit()

    # Simulate dying between XADD and marking the row relayed: XADD happens, mark fails.
    async def crash(*_: Any) -> None:
        raise ConnectionError("process died")

    original = asyncio.to_thread

    async def flaky_to_thread(func: Any, *args: Any) -> Any:
        if getattr(func, "__name__", "") == "_mark_relayed":
            await crash()
        return await original(func, *args)

    asyncio.to_thread = flaky_to_thread  # type: ignore[assignment]
    try:
        with pytest.raises(ConnectionError):
            await relay.relay_once()
    finally:
        asyncio.to_thread = original
    assert await relay.relay_once() == 1  # relayed again after the "restart"
    assert await redis_client.xlen(stream_for("tally")) == 2  # at least once: a duplicate

    handled: list[str] = []

    async def handle(envelope: EventEnvelope) -> None:
        def work() -> None:
            with unit_of_work(engine, clock) as uow:
                if uow.mark_processed("tally-counter", envelope.event_id):
                    handled.append(envelope.payload["name"])
                uow.commit()

        await asyncio.to_thread(work)

    consumer = StreamConsumer(
        redis_client, group="tally-counter", streams=[stream_for("tally")], handler=handle
    )
    await consumer.ensure_groups()
    assert await consumer.consume_once(block_ms=100) == 2
    assert handled == ["x"]  # the duplicate was recognised by event id


def test_the_inbox_of_a_batch_takes_each_new_event_once_in_order(engine: Engine) -> None:
    clock = ManualClock()
    with unit_of_work(engine, clock) as uow:
        assert uow.mark_processed("c", "e1")
        assert uow.mark_processed_many("c", ["e2", "e1", "e3", "e2"]) == ["e2", "e3"]
        uow.commit()
    with unit_of_work(engine, clock) as uow:
        assert uow.mark_processed_many("c", ["e3", "e4"]) == ["e4"]
        assert uow.mark_processed_many("other", ["e1"]) == ["e1"]
        assert uow.mark_processed_many("c", []) == []
        uow.commit()
    with unit_of_work(engine, clock) as uow:
        assert not uow.mark_processed("c", "e4")
        assert not uow.mark_processed("other", "e1")


async def test_consumer_that_dies_mid_handling_leaves_the_event_for_another(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    with unit_of_work(engine, clock) as uow:
        uow.publish(Counted("y"))
        uow.commit()
    await relay.relay_once()
    stream = stream_for("tally")

    async def dies(envelope: EventEnvelope) -> None:
        raise RuntimeError("killed mid-handling")

    seen: list[str] = []

    async def survives(envelope: EventEnvelope) -> None:
        seen.append(envelope.event_id)

    first = StreamConsumer(
        redis_client, group="g", streams=[stream], handler=dies, consumer_name="first"
    )
    await first.ensure_groups()
    await first.consume_once(block_ms=100)
    assert seen == []
    second = StreamConsumer(
        redis_client,
        group="g",
        streams=[stream],
        handler=survives,
        consumer_name="second",
        claim_idle_ms=0,
    )
    await second.consume_once(block_ms=100)
    assert len(seen) == 1  # claimed from the dead consumer, handled, acknowledged
    pending = await redis_client.xpending(stream, "g")
    assert pending["pending"] == 0


async def test_poison_event_goes_to_dead_letter_after_max_deliveries(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    with unit_of_work(engine, clock) as uow:
        uow.publish(Counted("poison"))
        uow.commit()
    await relay.relay_once()

    async def always_fails(envelope: EventEnvelope) -> None:
        raise ValueError("cannot handle")

    consumer = StreamConsumer(
        redis_client,
        group="g",
        streams=[stream_for("tally")],
        handler=always_fails,
        claim_idle_ms=0,
        max_deliveries=3,
    )
    await consumer.ensure_groups()
    for _ in range(4):
        await consumer.consume_once(block_ms=50)
    assert await redis_client.xlen(DEAD_LETTER_STREAM) == 1
    assert (await redis_client.xpending(stream_for("tally"), "g"))["pending"] == 0


async def test_consumer_span_joins_the_producer_trace(
    engine: Engine, redis_client: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    tracer = trace.get_tracer("test")
    with (
        tracer.start_as_current_span("request") as request_span,
        unit_of_work(engine, clock) as uow,
    ):
        uow.publish(Counted("t"))
        uow.commit()
    await relay.relay_once()

    async def handle(envelope: EventEnvelope) -> None:
        with tracer.start_as_current_span("handler work"):
            pass

    consumer = StreamConsumer(
        redis_client, group="g", streams=[stream_for("tally")], handler=handle
    )
    await consumer.ensure_groups()
    await consumer.consume_once(block_ms=100)

    trace_id = request_span.get_span_context().trace_id
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    in_trace = {s.name for s in finished if s.context and s.context.trace_id == trace_id}
    assert {
        "request",
        "reckon.event.publish Counted",
        "reckon.event.relay Counted",
        "reckon.event.consume Counted",
        "handler work",
    } <= in_trace
    by_name = {s.name: s for s in finished}
    consume = by_name["reckon.event.consume Counted"]
    relay_span = by_name["reckon.event.relay Counted"]
    publish = by_name["reckon.event.publish Counted"]
    assert consume.parent is not None
    assert relay_span.parent is not None
    assert relay_span.parent.span_id == publish.context.span_id
    assert consume.parent.span_id == publish.context.span_id


def test_kit_tables_exist(engine: Engine) -> None:
    assert isinstance(KIT, KitTables)


async def test_running_consumer_recreates_its_group_after_redis_was_flushed(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    seen: list[str] = []
    handled = asyncio.Event()

    async def handle(envelope: EventEnvelope) -> None:
        seen.append(envelope.payload["name"])
        handled.set()

    consumer = StreamConsumer(
        redis_client, group="g", streams=[stream_for("tally")], handler=handle, block_ms=100
    )
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.sleep(0.3)
        await redis_client.flushall()  # the group is gone with the stream
        with unit_of_work(engine, clock) as uow:
            uow.publish(Counted("after-flush"))
            uow.commit()
        await relay.relay_once()
        await asyncio.wait_for(handled.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)
    assert seen == ["after-flush"]
    assert (await redis_client.xpending(stream_for("tally"), "g"))["pending"] == 0


def counting_handler(engine: Engine, clock: ManualClock, handled: list[str]) -> Any:
    """A consumer that records each event it applies, deduplicating by event id."""

    async def handle(envelope: EventEnvelope) -> None:
        def work() -> None:
            with unit_of_work(engine, clock) as uow:
                if uow.mark_processed("tally-counter", envelope.event_id):
                    handled.append(envelope.payload["name"])
                uow.commit()

        await asyncio.to_thread(work)

    return handle


def publish(engine: Engine, clock: ManualClock, names: str) -> None:
    for name in names:
        with unit_of_work(engine, clock) as uow:
            uow.publish(Counted(name))
            uow.commit()


async def names_in_stream(client: aioredis.Redis) -> list[str]:
    entries = await client.xrange(stream_for("tally"))
    return [
        EventEnvelope.from_json(fields[b"envelope"]).payload["name"]
        for _, fields in entries or []
        if fields
    ]


async def drain(consumer: StreamConsumer) -> None:
    while await consumer.consume_once(block_ms=50):
        pass


async def test_events_unread_when_redis_lost_its_data_are_handled_once_after_all(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    handled: list[str] = []
    consumer = StreamConsumer(
        redis_client,
        group="tally-counter",
        streams=[stream_for("tally")],
        handler=counting_handler(engine, clock, handled),
        batch_size=3,
    )
    await consumer.ensure_groups()
    publish(engine, clock, "abcdef")
    await relay.relay_once()
    assert await consumer.consume_once(block_ms=50) == 3
    assert handled == list("abc")

    await redis_client.flushall()  # d, e, f were in the stream, unread: gone from Redis
    publish(engine, clock, "g")
    assert await relay.relay_once() == 7  # a..f re-sent, then g, in commit order
    await consumer.ensure_groups()  # as StreamConsumer.run does on NOGROUP
    await drain(consumer)

    assert handled == list("abcdefg")  # every event once, in order, none twice
    assert await relay.relay_once() == 0  # the loss is handled once, not forever
    assert outbox_count(engine, relayed=False) == 0


async def test_flush_after_everything_was_read_resends_but_applies_nothing_twice(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    handled: list[str] = []
    consumer = StreamConsumer(
        redis_client,
        group="tally-counter",
        streams=[stream_for("tally")],
        handler=counting_handler(engine, clock, handled),
    )
    await consumer.ensure_groups()
    publish(engine, clock, "abc")
    await relay.relay_once()
    await drain(consumer)
    assert handled == list("abc")

    await redis_client.flushall()
    assert await relay.relay_once() == 3
    await consumer.ensure_groups()
    await drain(consumer)
    assert await redis_client.xlen(stream_for("tally")) == 3  # delivered again...
    assert handled == list("abc")  # ...and recognised by event id
    assert (await redis_client.xpending(stream_for("tally"), "tally-counter"))["pending"] == 0


async def test_relays_in_several_processes_resend_a_loss_a_bounded_number_of_times(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    first = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    second = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    publish(engine, clock, "abc")
    await first.relay_once()
    assert await second.relay_once() == 0  # knows a..c are relayed; the mark agrees

    await redis_client.flushall()
    await asyncio.gather(first.relay_once(), second.relay_once())
    for _ in range(3):  # both noticed the loss once; neither keeps re-sending
        assert await first.relay_once() == 0
        assert await second.relay_once() == 0
    names = await names_in_stream(redis_client)
    assert set(names) == set("abc")
    assert len(names) <= 6  # at most one re-send per relay

    handled: list[str] = []
    consumer = StreamConsumer(
        redis_client,
        group="tally-counter",
        streams=[stream_for("tally")],
        handler=counting_handler(engine, clock, handled),
    )
    await consumer.ensure_groups()
    await drain(consumer)
    assert sorted(handled) == list("abc")


async def test_redis_restarted_from_an_older_snapshot_gets_the_newer_events_again(
    engine: Engine, tmp_path: Path
) -> None:
    clock = ManualClock()
    server = EmbeddedRedis(tmp_path / "redis").start()  # no automatic saves, no AOF
    client = aioredis.Redis.from_url(server.url)
    try:
        relay = OutboxRelay(engine, KIT.outbox, client, clock)
        publish(engine, clock, "ab")
        await relay.relay_once()
        await client.save()  # the snapshot holds a, b
        publish(engine, clock, "cd")
        await relay.relay_once()
        await client.aclose()
        server.stop()  # c, d were never saved
        server.start()
        client = aioredis.Redis.from_url(server.url)
        relay._redis = client  # the same process, reconnected to the restarted server
        assert await client.xlen(stream_for("tally")) == 2

        assert await relay.relay_once() == 2  # only what the snapshot missed
        assert await names_in_stream(client) == list("abcd")
    finally:
        await client.aclose()
        server.stop()


async def test_relayed_rows_are_replayable_within_the_retention_then_pruned(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock, retention=timedelta(hours=24))
    publish(engine, clock, "abc")
    await relay.relay_once()
    clock.advance(timedelta(hours=23))
    publish(engine, clock, "xyz")
    await relay.relay_once()
    assert outbox_count(engine) == 6  # nothing past the retention yet

    clock.advance(timedelta(hours=2))  # a..c relayed 25 h ago, x..z 2 h ago
    await redis_client.flushall()
    assert await relay.relay_once() == 3
    assert await names_in_stream(redis_client) == list("xyz")  # only those re-sent...
    assert outbox_count(engine) == 3  # ...and a..c pruned


async def test_backlog_and_consumer_lag_are_observed(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    stream = stream_for("tally")
    await redis_client.delete(stream)
    for name in ("l1", "l2", "l3"):
        with unit_of_work(engine, clock) as uow:
            uow.publish(Counted(name))
            uow.commit()
    backlog = [o.value for o in relay._observe_backlog(None)]  # type: ignore[arg-type]
    assert backlog == [3]
    await relay.relay_once()
    assert [o.value for o in relay._observe_backlog(None)] == [0]  # type: ignore[arg-type]

    async def accept(envelope: EventEnvelope) -> None:
        return None

    consumer = StreamConsumer(redis_client, group="lagging", streams=[stream], handler=accept)
    await consumer.ensure_groups()
    await redis_client.xgroup_setid(stream, "lagging", "0")
    await consumer.sample_lag()
    lags = {o.attributes["stream"]: o.value for o in consumer._observe_lag(None)}  # type: ignore[arg-type,index]
    assert lags == {stream: 3}
    await consumer.consume_once(block_ms=50)
    await consumer.sample_lag()
    lags = {o.attributes["stream"]: o.value for o in consumer._observe_lag(None)}  # type: ignore[arg-type,index]
    assert lags == {stream: 0}


async def test_a_batch_handler_gets_one_read_at_once_and_a_failed_batch_goes_one_by_one(
    engine: Engine, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    # Published in one request (one trace), as a bill run's work message publishes its
    # invoices: a read of them is one batch.
    with (
        trace.get_tracer("test").start_as_current_span("request"),
        unit_of_work(engine, clock) as uow,
    ):
        for name in ("a", "b", "c"):
            uow.publish(Counted(name))
        uow.commit()
    await relay.relay_once()
    batches: list[list[str]] = []
    singles: list[str] = []

    async def one(envelope: EventEnvelope) -> None:
        singles.append(envelope.payload["name"])

    async def many(envelopes: list[EventEnvelope]) -> None:
        batches.append([e.payload["name"] for e in envelopes])

    consumer = StreamConsumer(
        redis_client, group="g", streams=[stream_for("tally")], handler=one, batch_handler=many
    )
    await consumer.ensure_groups()
    assert await consumer.consume_once(block_ms=50) == 3
    assert batches == [["a", "b", "c"]]
    assert singles == []
    assert (await redis_client.xpending(stream_for("tally"), "g"))["pending"] == 0

    async def broken(envelopes: list[EventEnvelope]) -> None:
        raise RuntimeError("the batch cannot be handled")

    with (
        trace.get_tracer("test").start_as_current_span("request"),
        unit_of_work(engine, clock) as uow,
    ):
        for name in ("d", "e"):
            uow.publish(Counted(name))
        uow.commit()
    await relay.relay_once()
    again = StreamConsumer(
        redis_client, group="g", streams=[stream_for("tally")], handler=one, batch_handler=broken
    )
    assert await again.consume_once(block_ms=50) == 2
    assert singles == ["d", "e"]  # each handled on its own, and acknowledged
    assert (await redis_client.xpending(stream_for("tally"), "g"))["pending"] == 0


async def test_a_batch_is_handled_per_producer_trace_inside_that_trace(
    engine: Engine, redis_client: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    # Two stories (two traces) whose events arrive in one read: the batch handler is
    # called once per trace, as a child of it, so no hop leaves its own story's trace.
    spans.clear()
    clock = ManualClock()
    relay = OutboxRelay(engine, KIT.outbox, redis_client, clock)
    tracer = trace.get_tracer("test")
    stories: dict[str, int] = {}
    for story, names in (("first", ("a", "b")), ("second", ("c",))):
        with (
            tracer.start_as_current_span(story) as request,
            unit_of_work(engine, clock) as uow,
        ):
            for name in names:
                uow.publish(Counted(name))
            uow.commit()
        stories[story] = request.get_span_context().trace_id
    await relay.relay_once()
    calls: list[tuple[list[str], int]] = []

    async def one(envelope: EventEnvelope) -> None:
        raise AssertionError("a batch handler took these")

    async def many(envelopes: list[EventEnvelope]) -> None:
        current = trace.get_current_span().get_span_context().trace_id
        calls.append(([e.payload["name"] for e in envelopes], current))

    consumer = StreamConsumer(
        redis_client, group="g", streams=[stream_for("tally")], handler=one, batch_handler=many
    )
    await consumer.ensure_groups()
    assert await consumer.consume_once(block_ms=50) == 3
    assert calls == [(["a", "b"], stories["first"]), (["c"], stories["second"])]
    assert (await redis_client.xpending(stream_for("tally"), "g"))["pending"] == 0
