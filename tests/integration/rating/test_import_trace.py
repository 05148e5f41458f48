"""One import is one trace (issue 9 item 8): the batch writer runs in the caller's trace
context, so the rated-usage writes and the ``UsageRated`` publish, relay and consume
all belong to the trace of the ``ImportUsage`` call, not to root traces of their own."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.events import EventEnvelope, stream_for
from services.common.grpc_client import open_channel
from services.common.streams import StreamConsumer
from services.rating.entrypoints.main import RunningRating
from tests.conftest import TEST_TOKEN
from tests.integration.rating.conftest import add_account, apply_sample_catalog

HEADER = b"record_id,account_id,service,destination,event_time,quantity\n"


@pytest.fixture(scope="module", autouse=True)
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # This module owns the global provider (as the accounts tracing tests do).
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    return exporter


async def test_an_import_its_writes_and_its_events_are_one_trace(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub, spans: InMemorySpanExporter
) -> None:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_demo")
    consumed: list[str] = []

    async def handle(envelope: EventEnvelope) -> None:
        consumed.append(envelope.event_type)

    consumer = StreamConsumer(
        rating.app.redis, group="trace-test", streams=[stream_for("rating")], handler=handle
    )
    await consumer.ensure_groups()
    # 10 records in batches of 3 (the fixture): four batches, written by the writer thread.
    data = HEADER + b"".join(
        f"t-{i},acc_demo,voice,0205550{i:03d},2026-03-02T09:{i:02d}:00Z,60\n".encode()
        for i in range(10)
    )
    spans.clear()
    with trace.get_tracer("tests").start_as_current_span("test: import a file") as root:
        async with open_channel(rating.address, TEST_TOKEN, traced=True) as channel:
            traced = rating_pb2_grpc.RatingServiceStub(channel)
            reply = await traced.ImportUsage(
                iter([rating_pb2.ImportUsageRequest(file_name="t.csv", chunk=data)])
            )
    assert reply.file.rated == 10
    while await rating.app.relay.relay_once():
        pass
    while await consumer.consume_once(block_ms=100):
        pass
    assert "UsageRated" in consumed
    trace_id = root.get_span_context().trace_id
    finished = spans.get_finished_spans()
    mine = [s for s in finished if s.context.trace_id == trace_id]
    names = [s.name for s in mine]
    assert "reckon.rating.import" in names
    assert names.count("reckon.event.publish UsageRated") == 4  # one per stored batch
    assert "reckon.event.relay UsageRated" in names
    assert "reckon.event.consume UsageRated" in names
    statements = " ".join(
        str((s.attributes or {}).get("db.statement", ""))
        for s in mine
        if (s.attributes or {}).get("db.system")
    )
    assert "held_events" in statements  # the batches' writes, in the writer thread
    # No write of the import started a trace of its own.
    strays: list[Any] = [
        s
        for s in finished
        if s.context.trace_id != trace_id
        and s.parent is None
        and "rated_usage" in str((s.attributes or {}).get("db.statement", ""))
    ]
    assert strays == []
