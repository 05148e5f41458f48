"""OBS-1: the SMTP send joins the trace of the event it was made from."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.events import EventEnvelope, stream_for
from tests.integration.notifications.conftest import Notifications
from tests.integration.notifications.test_messages import invoice_issued


@pytest.fixture(scope="module", autouse=True)
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    return exporter


async def test_the_smtp_send_is_in_the_events_trace(
    notifications: Notifications, spans: InMemorySpanExporter
) -> None:
    n = notifications
    await n.customer()
    with trace.get_tracer("tests").start_as_current_span("test: invoicing issues") as root:
        carrier: dict[str, str] = {}
        inject(carrier)
    envelope = EventEnvelope(
        "evt_traced", "InvoiceIssued", "invoicing", "inv_001", n.clock.now(), invoice_issued(),
        carrier,
    )  # fmt: skip
    await n.redis.xadd(stream_for("invoicing"), {"envelope": envelope.to_json()})
    await n.wait_messages(1)
    await n.dispatch()
    trace_id = root.get_span_context().trace_id
    names = [s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    assert "reckon.event.consume InvoiceIssued" in names
    assert "reckon.notifications.send EMAIL" in names
    [send] = [
        s
        for s in spans.get_finished_spans()
        if s.name == "reckon.notifications.send EMAIL" and s.context.trace_id == trace_id
    ]
    assert send.attributes is not None
    assert send.attributes["reckon.event.id"] == "evt_traced"


async def test_events_planned_in_one_batch_keep_their_own_consume_spans(
    notifications: Notifications, spans: InMemorySpanExporter
) -> None:
    # Invoicing publishes InvoiceFinalized and InvoiceIssued in one transaction: one read
    # hands both to the batch handler; each still has its consume span, a child of its
    # producer, and the e-mail's send continues the InvoiceIssued one (the story's hops).
    n = notifications
    await n.customer()
    tracer = trace.get_tracer("tests")
    producers = {}
    envelopes = []
    with tracer.start_as_current_span("test: invoicing finalizes and issues") as root:
        for event_id, event_type in (("evt_fin", "InvoiceFinalized"), ("evt_iss", "InvoiceIssued")):
            with tracer.start_as_current_span(f"publish {event_type}") as producer:
                carrier: dict[str, str] = {}
                inject(carrier)
            producers[event_type] = producer.get_span_context().span_id
            envelopes.append(EventEnvelope(
                event_id, event_type, "invoicing", "inv_001", n.clock.now(), invoice_issued(),
                carrier,
            ))  # fmt: skip
    async with n.redis.pipeline(transaction=True) as pipe:  # one read gets both
        for envelope in envelopes:
            pipe.xadd(stream_for("invoicing"), {"envelope": envelope.to_json()})
        await pipe.execute()
    await n.wait_messages(1)
    await n.dispatch()
    trace_id = root.get_span_context().trace_id
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    assert "reckon.event.consume batch of 2" in [s.name for s in mine]
    consumed = {s.name: s for s in mine if s.name.startswith("reckon.event.consume Invoice")}
    assert set(consumed) == {
        "reckon.event.consume InvoiceFinalized",
        "reckon.event.consume InvoiceIssued",
    }
    issued = consumed["reckon.event.consume InvoiceIssued"]
    assert issued.parent is not None
    assert issued.parent.span_id == producers["InvoiceIssued"]
    [send] = [s for s in mine if s.name == "reckon.notifications.send EMAIL"]
    assert send.parent is not None
    assert send.parent.span_id == issued.context.span_id
