"""The automatic run bills each account as soon as its cycle ended in its own zone.

Los Angeles' BCD 1 cycle ends at 2027-02-01T00:00-08:00 = 08:00Z: the same UTC day, once
that instant passed, not the next. Auckland's ends at 2027-02-01T00:00+13:00 =
2027-01-31T11:00Z: then, and not a minute before (ADR 0062). All on the test clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import SubscriptionChangeKind
from services.common.ids import new_id
from tests.integration.invoicing.conftest import World, wait_for

LOS_ANGELES = "America/Los_Angeles"
AUCKLAND = "Pacific/Auckland"


async def _subscribed(world: World, zone: str) -> str:
    customer_id, account_id = await world.account(bcd=1, zone=zone)
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=new_id("sub"),
        zone=zone,
    )
    return account_id


async def _scheduled_runs_done(world: World, count: int) -> list[pb.BillRun]:
    """Waits until ``count`` scheduled runs exist and all of them finished."""

    async def probe() -> list[pb.BillRun] | None:
        reply = await world.stub.ListBillRuns(pb.ListBillRunsRequest())
        runs = [r for r in reply.bill_runs if r.scheduled]
        finished = all(r.state == pb.BILL_RUN_STATE_ACCEPTED for r in runs)
        return runs if len(runs) >= count and finished else None

    runs: list[pb.BillRun] = await wait_for(probe, 20, f"{count} scheduled runs done")
    assert len(runs) == count, [(r.billing_date, r.accounts_total) for r in runs]
    return runs


async def _invoices(world: World, account_id: str) -> list[pb.Invoice]:
    reply = await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    return list(reply.invoices)


async def _invoiced(world: World, account_id: str) -> pb.Invoice:
    async def probe() -> list[pb.Invoice] | None:
        return await _invoices(world, account_id) or None

    invoices: list[pb.Invoice] = await wait_for(probe, 20, f"the invoice of {account_id}")
    assert len(invoices) == 1
    return invoices[0]


async def test_each_account_is_billed_when_its_own_cycle_ended(
    scheduled_world: World,
) -> None:
    world = scheduled_world
    los_angeles = await _subscribed(world, LOS_ANGELES)
    auckland = await _subscribed(world, AUCKLAND)
    await world.processed(6)
    await _scheduled_runs_done(world, 1)  # 10 January's: nothing ended yet

    # A minute before Auckland's 1 February: nothing is billed early.
    world.clock.set(datetime(2027, 1, 31, 10, 59, tzinfo=UTC))
    await _scheduled_runs_done(world, 2)  # 31 January 00:00Z's
    assert await _invoices(world, auckland) == []

    world.clock.set(datetime(2027, 1, 31, 11, 0, 30, tzinfo=UTC))
    invoice = await _invoiced(world, auckland)
    assert invoice.period_end_time.ToDatetime(UTC) == datetime(2027, 1, 31, 11, tzinfo=UTC)
    assert (invoice.issue_date.month, invoice.issue_date.day) == (2, 1)  # Auckland's date
    assert await _invoices(world, los_angeles) == []

    # Past midnight UTC, but still 31 January in Los Angeles: not yet.
    world.clock.set(datetime(2027, 2, 1, 7, 59, tzinfo=UTC))
    await _scheduled_runs_done(world, 4)
    assert await _invoices(world, los_angeles) == []

    # 08:00Z is midnight in Los Angeles: billed the same UTC day.
    world.clock.set(datetime(2027, 2, 1, 8, 0, 30, tzinfo=UTC))
    invoice = await _invoiced(world, los_angeles)
    assert invoice.period_end_time.ToDatetime(UTC) == datetime(2027, 2, 1, 8, tzinfo=UTC)
    assert invoice.status == pb.INVOICE_STATUS_OPEN
    assert len(await _invoices(world, auckland)) == 1  # never twice
    await _scheduled_runs_done(world, 5)
