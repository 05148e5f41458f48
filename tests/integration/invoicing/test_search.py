"""SearchInvoices (INV-7): every filter narrows, pages follow each other, tokens keep filters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import grpc
from google.type import date_pb2

from reckon.invoicing.v1 import invoicing_pb2 as pb
from tests.integration.invoicing.conftest import World
from tests.integration.invoicing.test_invoices import amount, eur, refused


async def _invoice(world: World, account_id: str, net: str, *, finalize: bool = True) -> pb.Invoice:
    await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(account_id=account_id, description="Service", amount=eur(net))
    )
    reply = await world.stub.CreateImmediateInvoice(
        pb.CreateImmediateInvoiceRequest(account_id=account_id, finalize=finalize)
    )
    invoice: pb.Invoice = reply.invoice
    return invoice


async def test_search_filters_and_pages(world: World) -> None:
    _, first = await world.account(group="gold", terms=10)
    customer, second = await world.account(group="silver", terms=30)
    await world.processed(4)
    small = await _invoice(world, first, "10")  # 12.10 gross
    large = await _invoice(world, second, "100")  # 121.00
    draft = await _invoice(world, second, "50", finalize=False)  # 60.50, no number

    async def ids(**filters: object) -> list[str]:
        reply = await world.stub.SearchInvoices(pb.SearchInvoicesRequest(**filters))  # type: ignore[arg-type]
        return [i.invoice_id for i in reply.invoices]

    assert await ids(min_total=eur("50")) == [draft.invoice_id, large.invoice_id]  # newest first
    assert await ids(min_total=eur("50"), max_total=eur("100")) == [draft.invoice_id]
    assert await ids(group_id="gold") == [small.invoice_id]
    assert await ids(customer_id=customer, statuses=[pb.INVOICE_STATUS_OPEN]) == [large.invoice_id]
    assert await ids(number=large.number) == [large.invoice_id]
    today = date_pb2.Date(year=2027, month=1, day=10)
    assert await ids(issue_date_from=today, issue_date_to=today) == [
        large.invoice_id,
        small.invoice_id,
    ]

    # 21 January: the 10-day invoice is overdue, the 30-day one not yet.
    world.clock.set(datetime(2027, 1, 21, 9, tzinfo=UTC))
    assert await ids(overdue_only=True) == [small.invoice_id]
    await world.stub.OpenDispute(
        pb.OpenDisputeRequest(invoice_id=large.invoice_id, amount=eur("21"), reason="wrong rate")
    )
    assert await ids(disputed_only=True) == [large.invoice_id]
    await world.stub.RecordDunningLevel(
        pb.RecordDunningLevelRequest(invoice_id=small.invoice_id, level=1)
    )
    assert await ids(min_dunning_level=1) == [small.invoice_id]

    seen = []
    token = ""
    while True:
        page = await world.stub.SearchInvoices(
            pb.SearchInvoicesRequest(page_size=1, page_token=token)
        )
        seen += [i.invoice_id for i in page.invoices]
        token = page.next_page_token
        if not token:
            break
    assert seen == [draft.invoice_id, large.invoice_id, small.invoice_id]
    first_page = await world.stub.SearchInvoices(pb.SearchInvoicesRequest(page_size=1))
    _, fields = await refused(
        world.stub.SearchInvoices(
            pb.SearchInvoicesRequest(
                page_size=1, page_token=first_page.next_page_token, group_id="gold"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"page_token"}
    _, fields = await refused(
        world.stub.SearchInvoices(pb.SearchInvoicesRequest(min_total=eur("5"), max_total=eur("1"))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"max_total"}
    assert amount(large.total_gross) == Decimal("121")
