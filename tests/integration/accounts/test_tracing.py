"""One trace follows a call into the database, through the outbox and the event bus,
into the referral consumer (OBS-1)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reckon.accounts.v1 import accounts_pb2 as pb
from reckon.accounts.v1 import accounts_pb2_grpc
from services.common.grpc_client import open_channel
from tests.conftest import TEST_TOKEN
from tests.integration.accounts.conftest import Accounts, wait_for


@pytest.fixture(scope="module", autouse=True)
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Tests own the global provider for this module (as the kit's event-bus tests do):
    # the service started by each test picks it up.
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    return exporter


async def test_the_referral_consumer_joins_the_trace_of_the_call(
    accounts: Accounts, spans: InMemorySpanExporter
) -> None:
    referrer = await accounts.customer()
    spans.clear()

    tracer = trace.get_tracer("tests")
    async with open_channel(accounts.address, TEST_TOKEN, traced=True) as channel:
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        with tracer.start_as_current_span("test: sign up a referred friend") as root:
            await stub.CreateCustomer(
                pb.CreateCustomerRequest(
                    customer=pb.Customer(
                        display_name="Friend",
                        email="friend@example.com",
                        referred_by=referrer.referral_code,
                    )
                )
            )
    trace_id = root.get_span_context().trace_id

    def names_in_trace() -> list[str]:
        return [s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    async def consumer_done() -> bool:
        return any(n.startswith("reckon.event.consume") for n in names_in_trace())

    await wait_for(consumer_done, 10, "the consumer's span")
    names = names_in_trace()
    assert "/reckon.accounts.v1.AccountsService/CreateCustomer" in names
    assert "reckon.event.publish CustomerCreated" in names
    assert "reckon.event.relay CustomerCreated" in names
    assert "reckon.event.consume CustomerCreated" in names
    sql = [
        s
        for s in spans.get_finished_spans()
        if s.context.trace_id == trace_id and (s.attributes or {}).get("db.system")
    ]
    statements = " ".join(str((s.attributes or {}).get("db.statement", "")) for s in sql)
    assert "INSERT INTO customers" in statements  # the call's write
    assert "UPDATE customers" in statements  # the consumer's credit, same trace
