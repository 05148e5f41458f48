"""An account's month end to end: events in, bill run, invoice, payments, credit notes.

Account: BCD 1, Europe/Amsterdam, 14 days' terms. On 10 January the customer
subscribes to basic (31.00/month in advance, 10.00 activation) and makes three
calls rated 0.0149 each. The invoice of 1 February carries:

- basic for February in advance:                    31.00
- activation (one-time):                            10.00
- basic 10-31 January, 22 of 31 days (31 x 22/31):  22.00
- voice NL mobile, 3 records, 0.0447 rounded once:   0.04
  net 63.04; VAT 21 % of 63.04 = 13.2384 -> 13.24; total 76.28.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.type import date_pb2, money_pb2

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import SubscriptionChangeKind
from services.common.events import EventEnvelope
from services.common.grpc_errors import details_of
from services.common.ids import new_id
from services.invoicing.domain.parties import ItemStatus
from tests.integration.invoicing.conftest import World, wait_for


def eur(amount: str) -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(currency_code="EUR", units=units, nanos=int((value - units) * 10**9))


def amount(money: money_pb2.Money) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / 10**9


async def refused(call: object, code: grpc.StatusCode) -> tuple[str, set[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    details = details_of(caught.value)
    return details.reason, details.fields


async def month_of_basic(world: World) -> tuple[str, str]:
    customer_id, account_id = await world.account()
    at = world.clock.now()
    await world.subscription_change(
        account_id, customer_id, SubscriptionChangeKind.CREATED, at, subscription_id=new_id("sub")
    )
    await world.usage(account_id, datetime(2027, 1, 15, 12, tzinfo=UTC), ["0.0149"] * 3)
    await world.processed(4)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    return customer_id, account_id


async def run_to(world: World, run_id: str, state: int) -> pb.BillRun:
    async def probe() -> pb.BillRun | None:
        reply = await world.stub.GetBillRun(pb.GetBillRunRequest(bill_run_id=run_id))
        return reply.bill_run if reply.bill_run.state == state else None

    found: pb.BillRun = await wait_for(probe, 20, f"bill run in state {state}")
    return found


async def test_bill_run_drafts_accepts_and_payments_settle(world: World) -> None:
    customer_id, account_id = await month_of_basic(world)
    scope = pb.BillRunScope(account_id=account_id)
    preview = await world.stub.StartBillRun(
        pb.StartBillRunRequest(
            scope=scope, dry_run=True, billing_date=date_pb2.Date(year=2027, month=2, day=1)
        )
    )
    assert [amount(i.total_gross) for i in preview.preview] == [Decimal("76.28")]
    assert preview.bill_run.bill_run_id == ""
    assert world.row_counts()["invoices"] == 0  # the preview wrote nothing

    started = await world.stub.StartBillRun(pb.StartBillRunRequest(scope=scope, request_id="run-1"))
    run = await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_DRAFTED)
    assert (run.accounts_total, run.invoices_drafted, run.accounts_failed) == (1, 1, 0)
    again = await world.stub.StartBillRun(pb.StartBillRunRequest(scope=scope, request_id="run-1"))
    assert again.bill_run.bill_run_id == run.bill_run_id  # a repeat replays the first answer
    # A late duplicate delivery that found this invoice must not mark the item SKIPPED.
    with world.service.app.uow_factory() as uow:
        uow.batch.set_items(
            run.bill_run_id, [(account_id, ItemStatus.SKIPPED, "")], uow.clock.now()
        )
        uow.commit()
    with world.service.app.uow_factory() as uow:
        assert uow.runs.item_status(run.bill_run_id, account_id) == ItemStatus.DRAFTED

    search = await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    (draft,) = search.invoices
    assert (draft.status, draft.number) == (pb.INVOICE_STATUS_DRAFT, "")
    details = await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=draft.invoice_id))
    invoice = details.invoice
    nets = sorted((line.kind, amount(line.net_amount)) for line in invoice.lines)
    assert nets == [
        (pb.LINE_KIND_RECURRING, Decimal("31")),
        (pb.LINE_KIND_PRORATION, Decimal("22")),
        (pb.LINE_KIND_USAGE, Decimal("0.04")),
        (pb.LINE_KIND_ONE_TIME, Decimal("10")),
    ]
    usage_line = next(line for line in invoice.lines if line.kind == pb.LINE_KIND_USAGE)
    assert (usage_line.detail_count, usage_line.unrounded_amount) == (3, "0.0447")
    assert [
        (g.tax_rate, amount(g.taxable_amount), amount(g.tax_amount)) for g in invoice.vat_breakdown
    ] == [("21", Decimal("63.04"), Decimal("13.24"))]
    assert (amount(invoice.total_net), amount(invoice.total_tax), amount(invoice.total_gross)) == (
        Decimal("63.04"),
        Decimal("13.24"),
        Decimal("76.28"),
    )
    assert invoice.language_code == "nl"

    # A second run for the same cycle makes no second invoice.
    second = await world.stub.StartBillRun(pb.StartBillRunRequest(scope=scope))
    done = await run_to(world, second.bill_run.bill_run_id, pb.BILL_RUN_STATE_DRAFTED)
    assert (done.accounts_skipped, done.invoices_drafted) == (1, 0)

    await world.stub.AcceptBillRun(pb.AcceptBillRunRequest(bill_run_id=run.bill_run_id))
    await run_to(world, run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    opened = (
        await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=draft.invoice_id))
    ).invoice
    assert (opened.status, opened.number, opened.series) == (
        pb.INVOICE_STATUS_OPEN,
        "INV-2027-000001",
        "INV-2027",
    )
    assert (opened.issue_date, opened.due_date) == (
        date_pb2.Date(year=2027, month=2, day=1),
        date_pb2.Date(year=2027, month=2, day=15),
    )
    reason, _ = await refused(
        world.stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(invoice_id=draft.invoice_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "INVALID_INVOICE_STATUS"

    paid = await world.stub.RecordPayment(
        pb.RecordPaymentRequest(
            invoice_id=draft.invoice_id, payment_id="pay_1", amount=eur("50"), request_id="p1"
        )
    )
    assert (paid.status, amount(paid.amount_due)) == (
        pb.INVOICE_STATUS_PARTIALLY_PAID,
        Decimal("26.28"),
    )
    replay = await world.stub.RecordPayment(
        pb.RecordPaymentRequest(
            invoice_id=draft.invoice_id, payment_id="pay_1", amount=eur("50"), request_id="p1"
        )
    )
    assert amount(replay.amount_paid) == Decimal("50")  # counted once
    reason, _ = await refused(
        world.stub.RecordPayment(
            pb.RecordPaymentRequest(
                invoice_id=draft.invoice_id, payment_id="pay_2", amount=eur("30")
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "AMOUNT_EXCEEDS_DUE"
    settled = await world.stub.RecordPayment(
        pb.RecordPaymentRequest(
            invoice_id=draft.invoice_id,
            payment_id="pay_2",
            amount=eur("30"),
            excess_to_account_credit=True,
        )
    )
    assert (settled.status, amount(settled.credited_to_account)) == (
        pb.INVOICE_STATUS_PAID,
        Decimal("3.72"),
    )
    reason, _ = await refused(
        world.stub.VoidInvoice(
            pb.VoidInvoiceRequest(invoice_id=draft.invoice_id, reason="mistake")
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "INVALID_INVOICE_STATUS"

    # A chargeback reopens the invoice.
    reopened = await world.stub.ReversePayment(
        pb.ReversePaymentRequest(
            invoice_id=draft.invoice_id,
            payment_id="pay_2",
            amount=eur("26.28"),
            kind=pb.REVERSAL_KIND_CHARGEBACK,
        )
    )
    assert (reopened.status, amount(reopened.amount_due)) == (
        pb.INVOICE_STATUS_PARTIALLY_PAID,
        Decimal("26.28"),
    )

    # Credit note per line: the usage line (0.04 net, 0.01 VAT) reduces what is due.
    credit = await world.stub.CreateCreditNote(
        pb.CreateCreditNoteRequest(
            invoice_id=draft.invoice_id,
            reason="calls disputed",
            lines=[pb.CreditNoteLineRequest(line_id=usage_line.line_id)],
        )
    )
    assert (credit.credit_note.number, amount(credit.credit_note.total_gross)) == (
        "CN-2027-000001",
        Decimal("0.05"),
    )
    assert amount(credit.invoice.amount_due) == Decimal("26.23")
    reason, _ = await refused(
        world.stub.CreateCreditNote(
            pb.CreateCreditNoteRequest(
                invoice_id=draft.invoice_id, reason="again", amount=eur("63.01")
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "CREDIT_EXCEEDS_INVOICED"  # 63.04 - 0.04 credited = 63.00 left

    dispute = await world.stub.OpenDispute(
        pb.OpenDisputeRequest(
            invoice_id=draft.invoice_id, amount=eur("12.10"), reason="activation not agreed"
        )
    )
    assert amount(dispute.invoice.disputed_amount) == Decimal("12.1")
    resolved = await world.stub.ResolveDispute(
        pb.ResolveDisputeRequest(
            dispute_id=dispute.dispute.dispute_id, outcome=pb.DISPUTE_OUTCOME_CUSTOMER_WINS
        )
    )
    # 12.10 gross at 21 % is a net of 10.00: the credit note is 10.00 + 2.10.
    assert (resolved.dispute.status, amount(resolved.invoice.amount_due)) == (
        pb.DISPUTE_STATUS_WON,
        Decimal("14.13"),
    )
    assert amount(resolved.invoice.disputed_amount) == 0

    full = await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=draft.invoice_id))
    assert [p.kind for p in full.payments] == ["ALLOCATION", "ALLOCATION", "CHARGEBACK"]
    assert len(full.credit_notes) == 2
    assert [h.action for h in full.history][:2] == ["drafted", "finalized"]
    credit_balance = await world.stub.GetAccountCredit(
        pb.GetAccountCreditRequest(account_id=account_id)
    )
    assert amount(credit_balance.balance) == Decimal("3.72")

    async def relayed() -> list[EventEnvelope] | None:
        entries: Any = await world.redis.xrange("reckon:events:invoicing")
        found = [EventEnvelope.from_json(fields[b"envelope"]) for _, fields in entries]
        return found if any(e.event_type == "DisputeResolved" for e in found) else None

    envelopes: list[EventEnvelope] = await wait_for(relayed, 10, "the events relayed")
    types = [e.event_type for e in envelopes if e.aggregate_id == draft.invoice_id]
    assert types[:3] == ["InvoiceFinalized", "InvoiceIssued", "InvoicePartiallyPaid"]
    assert {
        "InvoicePaid",
        "InvoiceReopened",
        "CreditNoteIssued",
        "DisputeOpened",
        "DisputeResolved",
    } <= set(types)
    issued = next(e for e in envelopes if e.event_type == "InvoiceIssued")
    assert issued.payload["total"] == {"amount": "76.28", "currency": "EUR"}
    assert (issued.payload["due_date"], issued.payload["language_code"]) == ("2027-02-15", "nl")
    assert issued.payload["customer_id"] == customer_id


async def test_bad_input_names_the_field_and_writes_nothing(world: World) -> None:
    _, account_id = await world.account()
    await world.processed(2)
    before = world.row_counts()
    _, fields = await refused(
        world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id="nope")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"invoice_id"}
    _, fields = await refused(
        world.stub.AddPendingItem(
            pb.AddPendingItemRequest(
                account_id=account_id,
                description="",
                amount=money_pb2.Money(currency_code="XXQ", units=1),
                tax_rate="x",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {"description", "amount.currency_code", "tax_rate"} <= fields
    _, fields = await refused(
        world.stub.StartBillRun(pb.StartBillRunRequest(scope=pb.BillRunScope(bill_cycle_day=32))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "scope.bill_cycle_day" in fields
    reason, _ = await refused(
        world.stub.AddPendingItem(
            pb.AddPendingItemRequest(
                account_id=account_id, description="fee", amount=eur("-1"), tax_category="S"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    reason, _ = await refused(
        world.stub.CreateImmediateInvoice(pb.CreateImmediateInvoiceRequest(account_id=account_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "NOTHING_TO_INVOICE"
    assert world.row_counts() == before


async def test_late_fee_goes_on_an_immediate_invoice_and_account_credit_pays_it(
    world: World,
) -> None:
    _, account_id = await world.account()
    await world.processed(2)
    await world.stub.AddAccountCredit(
        pb.AddAccountCreditRequest(
            account_id=account_id, amount=eur("5"), reason="overpayment", request_id="c1"
        )
    )
    item = await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(
            account_id=account_id,
            description="Late fee",
            amount=eur("10"),
            kind=pb.LINE_KIND_LATE_FEE,
            request_id="f1",
        )
    )
    assert item.pending_item.kind == pb.LINE_KIND_LATE_FEE
    invoice = (
        await world.stub.CreateImmediateInvoice(
            pb.CreateImmediateInvoiceRequest(account_id=account_id, finalize=True, request_id="i1")
        )
    ).invoice
    # 10.00 + 21 % = 12.10, of which 5.00 account credit: 7.10 due.
    assert (
        amount(invoice.total_gross),
        amount(invoice.credit_applied),
        amount(invoice.amount_due),
    ) == (
        Decimal("12.1"),
        Decimal("5"),
        Decimal("7.1"),
    )
    balance = await world.stub.GetAccountCredit(pb.GetAccountCreditRequest(account_id=account_id))
    assert amount(balance.balance) == 0
    pending = await world.stub.ListPendingItems(pb.ListPendingItemsRequest(account_id=account_id))
    assert list(pending.pending_items) == []
    received = pb.RecordPaymentRequest(
        invoice_id=invoice.invoice_id, payment_id="pay_b", amount=eur("7.10")
    )
    received.receive_time.FromDatetime(datetime(2027, 1, 9, 10, tzinfo=UTC))
    assert (await world.stub.RecordPayment(received)).status == pb.INVOICE_STATUS_PAID
    payments = (
        await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
    ).payments
    assert [p.record_time.ToDatetime(tzinfo=UTC) for p in payments] == [
        datetime(2027, 1, 9, 10, tzinfo=UTC)
    ]


async def test_a_parent_account_takes_its_childs_charges_on_one_invoice(world: World) -> None:
    _, parent = await world.account(group="acme")
    _, child = await world.account(group="acme", parent=parent)
    await world.usage(parent, datetime(2027, 1, 12, tzinfo=UTC), ["1.00"])
    await world.usage(child, datetime(2027, 1, 13, tzinfo=UTC), ["2.00", "0.50"])
    await world.processed(6)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(group_id="acme"), auto_accept=True)
    )
    run = await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    assert (run.accounts_total, run.invoices_finalized) == (
        1,
        1,
    )  # the child is billed by its parent
    (invoice,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(group_id="acme"))
    ).invoices
    assert invoice.account_id == parent
    lines = (
        await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
    ).invoice.lines
    assert sorted((line.source_account_id, amount(line.net_amount)) for line in lines) == [
        ("", Decimal("1")),
        (child, Decimal("2.5")),
    ]


async def test_a_prepaid_top_up_gets_a_paid_receipt(world: World) -> None:
    _, account_id = await world.account()
    await world.processed(2)
    await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(
            account_id=account_id, description="Top-up", amount=eur("20"), kind=pb.LINE_KIND_TOP_UP
        )
    )
    receipt = (
        await world.stub.CreateImmediateInvoice(
            pb.CreateImmediateInvoiceRequest(account_id=account_id, finalize=True)
        )
    ).invoice
    assert [(g.tax_category, amount(g.tax_amount)) for g in receipt.vat_breakdown] == [
        ("O", Decimal(0))
    ]
    paid = await world.stub.RecordPayment(
        pb.RecordPaymentRequest(
            invoice_id=receipt.invoice_id, payment_id="pay_top", amount=eur("20")
        )
    )
    assert paid.status == pb.INVOICE_STATUS_PAID


async def test_a_cancelled_run_leaves_no_invoice_and_the_next_run_bills_the_same(
    world: World,
) -> None:
    _, account_id = await month_of_basic(world)
    scope = pb.BillRunScope(account_id=account_id)
    first = await world.stub.StartBillRun(pb.StartBillRunRequest(scope=scope))
    await run_to(world, first.bill_run.bill_run_id, pb.BILL_RUN_STATE_DRAFTED)
    cancelled = await world.stub.CancelBillRun(
        pb.CancelBillRunRequest(bill_run_id=first.bill_run.bill_run_id)
    )
    assert cancelled.bill_run.state == pb.BILL_RUN_STATE_CANCELLED
    assert world.row_counts()["invoices"] == 0
    reason, _ = await refused(
        world.stub.AcceptBillRun(pb.AcceptBillRunRequest(bill_run_id=first.bill_run.bill_run_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "INVALID_BILL_RUN_STATE"
    second = await world.stub.StartBillRun(pb.StartBillRunRequest(scope=scope, auto_accept=True))
    await run_to(world, second.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    (invoice,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    ).invoices
    # The cancelled draft took no number: the first invoice is number 1.
    assert (invoice.number, amount(invoice.total_gross)) == ("INV-2027-000001", Decimal("76.28"))
    sent = await world.stub.SendBillRun(
        pb.SendBillRunRequest(bill_run_id=second.bill_run.bill_run_id)
    )
    assert sent.invoices_sent == 1
