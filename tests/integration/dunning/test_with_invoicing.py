"""Late fees and penalty interest reach the real invoicing service as pending items.

Invoicing runs in-process (its own database, the session's Redis) and issues a real
invoice (80.00 EUR, due 14 days after issue); dunning projects it from invoicing's
stream and, with a policy of a 2 % late fee (at least 5.00 EUR) and 36.5 % a year of
penalty interest from day 7, posts through AddPendingItem, worked by hand:
day 7: late fee max(1.60, 5.00) = 5.00 and interest 7 x 80.00 x 0.365 / 365 = 0.56;
day 10: interest for days 8-10 = 3 x 0.08 = 0.24. A rerun of day 10 posts nothing.
Invoicing also records the invoice's dunning level (RecordDunningLevel).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from google.type import date_pb2
from sqlalchemy import create_engine, text

from reckon.dunning.v1 import dunning_pb2 as dpb
from reckon.dunning.v1 import dunning_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2 as ipb
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.grpc_client import open_channel
from services.common.money import Money
from services.common.proto_convert import money_to_proto
from services.dunning.bootstrap import RunningDunning, running_service
from services.dunning.config import DunningSettings
from tests.conftest import POSTGRES_URL, TEST_TOKEN, TestDatabase
from tests.integration.dunning.test_real_time_effect import _eventually, _own
from tests.integration.invoicing.conftest import World, start_time, world

__all__ = ["start_time", "world"]  # fixtures of invoicing's tests, used here

POLICY = """\
code: fees
applies_to: {default: true}
levels:
  - name: fees
    when: {days_past_due: 7}
    reactions:
      - {kind: late_fee, percent: "2", minimum: {EUR: "5.00"}}
      - {kind: penalty_interest, annual_rate_percent: "36.5"}
"""


@pytest.fixture
async def dunning(
    database: TestDatabase, world: World
) -> AsyncIterator[tuple[RunningDunning, ManualClock]]:
    own = _own(database, "dunning")
    clock = ManualClock(world.clock.now())
    settings = load_settings(
        DunningSettings,
        listen="127.0.0.1:0",
        database_url=own.url,
        database_schema=own.schema,
        shutdown_grace_seconds=0,
        effects_interval_seconds=0.2,
        invoicing_addr=f"127.0.0.1:{world.service.port}",
    )
    try:
        async with running_service(settings, clock=clock) as service:
            yield service, clock
    finally:
        if own.kind == "postgres":
            engine = create_engine(POSTGRES_URL)
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{own.schema}" CASCADE'))
            engine.dispose()


@pytest.mark.slow
async def test_late_fee_and_interest_become_pending_items_of_the_next_invoice(
    world: World, dunning: tuple[RunningDunning, ManualClock]
) -> None:
    service, _clock = dunning
    _, account_id = await world.account(terms=14)
    await world.processed(2)
    await world.stub.AddPendingItem(
        ipb.AddPendingItemRequest(
            account_id=account_id,
            description="Conference bridge, March",
            amount=money_to_proto(Money.of("80.00", "EUR")),
            kind=ipb.LINE_KIND_ONE_TIME,
            tax_category="Z",
            tax_rate="0",
        )
    )
    invoice = (
        await world.stub.CreateImmediateInvoice(
            ipb.CreateImmediateInvoiceRequest(account_id=account_id, finalize=True)
        )
    ).invoice
    due = datetime(invoice.due_date.year, invoice.due_date.month, invoice.due_date.day).date()
    channel = open_channel(service.address, TEST_TOKEN, traced=False)
    try:
        stub = dunning_pb2_grpc.DunningServiceStub(channel)
        await stub.ApplyPolicy(dpb.ApplyPolicyRequest(document=POLICY))

        async def projected() -> bool:
            with service.app.uow_factory() as uow:
                return uow.invoices.get(invoice.invoice_id) is not None

        await _eventually(projected, 15, "dunning to project the issued invoice")

        async def run(day: int) -> None:
            on = due + timedelta(days=day)
            await stub.RunDunning(
                dpb.RunDunningRequest(
                    run_date=date_pb2.Date(year=on.year, month=on.month, day=on.day), wait=True
                )
            )

        async def items(count: int) -> list[tuple[str, str, str]]:
            reply = await world.stub.ListPendingItems(
                ipb.ListPendingItemsRequest(account_id=account_id)
            )
            found = [
                (
                    ipb.LineKind.Name(i.kind),
                    f"{i.amount.units}.{i.amount.nanos // 10_000_000:02d}",
                    i.reference_invoice_id,
                )
                for i in reply.pending_items
            ]
            return found if len(found) >= count else []

        await run(7)
        posted = await _eventually(lambda: items(2), 10, "the late fee and interest")
        assert sorted(posted) == [
            ("LINE_KIND_LATE_FEE", "5.00", invoice.invoice_id),
            ("LINE_KIND_PENDING_ITEM", "0.56", invoice.invoice_id),
        ]

        async def level_recorded() -> int:
            reply = await world.stub.GetInvoice(
                ipb.GetInvoiceRequest(invoice_id=invoice.invoice_id)
            )
            return int(reply.invoice.dunning_level)

        # Invoicing keeps the invoice's dunning level (searchable, INV-7).
        assert await _eventually(level_recorded, 10, "invoicing to record level 1") == 1
        await run(10)
        posted = await _eventually(lambda: items(3), 10, "the interest of days 8-10")
        assert sorted(posted)[-1] == ("LINE_KIND_PENDING_ITEM", "0.56", invoice.invoice_id)
        assert ("LINE_KIND_PENDING_ITEM", "0.24", invoice.invoice_id) in posted
        # A rerun of day 10 posts nothing more, even once the effects loop has run again.
        await run(10)
        await asyncio.sleep(0.6)
        assert len(await items(0)) == 3
    finally:
        await channel.close()
