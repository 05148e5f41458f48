"""The daily run starts by itself when the clock passes a cycle end; re-rating of a billed
period becomes a credit note (lower) or a correction on the next invoice (higher)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import SubscriptionChangeKind
from services.common.ids import new_id
from services.rating.service_layer.events import UsageRerated
from tests.integration.invoicing.conftest import World, wait_for
from tests.integration.invoicing.test_invoices import amount


async def test_moving_the_clock_past_the_cycle_end_bills_and_rerating_corrects(
    scheduled_world: World,
) -> None:
    world = scheduled_world
    customer_id, account_id = await world.account()
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=new_id("sub"),
    )
    await world.usage(account_id, datetime(2027, 1, 15, 12, tzinfo=UTC), ["1.00", "2.00"])
    await world.processed(4)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))  # past 1 February 00:00 Amsterdam

    async def invoiced() -> list[pb.Invoice] | None:
        reply = await world.stub.SearchInvoices(
            pb.SearchInvoicesRequest(account_id=account_id, statuses=[pb.INVOICE_STATUS_OPEN])
        )
        return list(reply.invoices) or None

    (invoice,) = await wait_for(invoiced, 15, "the daily run's invoice")
    runs = await world.stub.ListBillRuns(pb.ListBillRunsRequest())
    # One run a day, newest first: 10 January's found nothing due, 1 February's this account.
    assert [(r.scheduled, r.accounts_total) for r in runs.bill_runs] == [(True, 1), (True, 0)]
    # 31 + 10 + 22 + 3.00 usage = 66.00 net, 13.86 VAT.
    assert amount(invoice.total_gross) == Decimal("79.86")
    details = await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
    usage = next(line for line in details.invoice.lines if line.kind == pb.LINE_KIND_USAGE)

    # Re-rating: the 2.00 call becomes 1.50 gross-proportionally (2.42 -> 1.815 gross).
    record_ids = await _record_ids(world, invoice.invoice_id)
    await world.publish(
        "rating",
        UsageRerated(
            rerate_id="rr_1",
            account_id=account_id,
            period_start="2027-01-01T00:00:00+00:00",
            period_end="2027-02-01T00:00:00+00:00",
            catalog_revision=2,
            totals={},
            corrections=[
                {
                    "record_id": record_ids["2"],
                    "old": {"amount": "2.42", "currency": "EUR"},
                    "new": {"amount": "1.815", "currency": "EUR"},
                },
                {
                    "record_id": record_ids["1"],
                    "old": {"amount": "1.21", "currency": "EUR"},
                    "new": {"amount": "1.21", "currency": "EUR"},
                },
            ],
        ),
    )

    async def credited() -> list[pb.CreditNote] | None:
        reply = await world.stub.ListCreditNotes(
            pb.ListCreditNotesRequest(invoice_id=invoice.invoice_id)
        )
        return list(reply.credit_notes) or None

    (note,) = await wait_for(credited, 15, "the re-rating credit note")
    # 0.50 net less, at the usage line's 21 %: 0.50 + 0.11 (0.105 half-up) = 0.61.
    assert (amount(note.total_net), amount(note.total_gross)) == (Decimal("0.5"), Decimal("0.61"))
    after = (
        await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
    ).invoice
    assert [line.net_amount for line in after.lines if line.line_id == usage.line_id] == [
        usage.net_amount
    ]
    assert amount(after.amount_due) == Decimal("79.25")  # the invoice itself is never edited

    # A higher amount is a debit on the next invoice: the 1.00 call re-rated to 2.00.
    await world.publish(
        "rating",
        UsageRerated(
            rerate_id="rr_2",
            account_id=account_id,
            period_start="2027-01-01T00:00:00+00:00",
            period_end="2027-02-01T00:00:00+00:00",
            catalog_revision=3,
            totals={},
            corrections=[
                {
                    "record_id": record_ids["1"],
                    "old": {"amount": "1.21", "currency": "EUR"},
                    "new": {"amount": "2.42", "currency": "EUR"},
                }
            ],
        ),
    )

    async def debited() -> list[pb.PendingItem] | None:
        reply = await world.stub.ListPendingItems(pb.ListPendingItemsRequest(account_id=account_id))
        return list(reply.pending_items) or None

    (item,) = await wait_for(debited, 15, "the re-rating debit")
    assert (item.kind, amount(item.amount), item.reference_invoice_id) == (
        pb.LINE_KIND_CORRECTION,
        Decimal("1"),
        invoice.invoice_id,
    )


async def _record_ids(world: World, invoice_id: str) -> dict[str, str]:
    from sqlalchemy import select

    from services.invoicing.adapters.orm import rated_usage

    with world.engine.connect() as connection:
        rows = connection.execute(
            select(rated_usage.c.record_id, rated_usage.c.net).where(
                rated_usage.c.invoice_id == invoice_id
            )
        ).all()
    return {format(net.normalize(), "f"): record_id for record_id, net in rows}
