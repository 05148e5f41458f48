"""VAT categories without VAT, from the tax region to the e-invoice (EN 16931).

The pricer answers what rating answers for a region whose ``vat_category`` is set
(``test_plan_fees``): fees and usage of that region at 0 % in that category. Each
account: basic (31.00/month in advance, 10.00 activation) from 10 January, 3.00 of
usage; billed on 1 February (Amsterdam):

    activation 10.00 + 10-31 January 31.00 x 22/31 = 22.00 + February 31.00 + usage 3.00
    = 66.00 net, VAT 0.00, total 66.00; one breakdown group, its exemption reason.

Every invoice, and a 6.00 credit note of the intra-community one, passes the XSDs and
the EN 16931 Schematron as UBL, CII and Factur-X with zero errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
import redis.asyncio as aioredis
from google.type import money_pb2
from sqlalchemy import select

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import CustomerUpdated, SubscriptionChangeKind
from services.common.clock import ManualClock
from services.common.ids import new_id
from services.invoicing.adapters.documents import ModelRenderer
from services.invoicing.adapters.orm import pending_items, rated_usage
from services.invoicing.documents.__main__ import embedded_xml
from services.invoicing.documents.validation import SchematronWorker, validate
from services.invoicing.domain.builder import Pricing, TaxRate
from services.invoicing.domain.parties import AccountFacts
from tests.conftest import TestDatabase
from tests.integration.invoicing.conftest import (
    PriceList,
    World,
    invoicing_settings,
    serve_world,
)
from tests.integration.invoicing.test_invoices import amount, eur, refused, run_to

# Region -> what rating prices its services at (tax_rate(): 0 % in the region's category).
REGIONS = {
    "BE-B2B": "K",  # intra-community supply to a business in Belgium
    "DE-RC": "AE",  # reverse charge
    "NL-MED": "E",  # exempt
    "NL-OUT": "O",  # not subject to VAT
    "NL-ZERO": "Z",  # zero rated
}
BUYER_VAT_IDS = {"BE-B2B": "BE0477472701", "DE-RC": "DE136695976"}
REASONS = {
    "K": ("Intra-community supply", "VATEX-EU-IC"),
    "AE": ("Reverse charge", "VATEX-EU-AE"),
    "E": ("Exempt from VAT", ""),
    "O": ("Not subject to VAT", "VATEX-EU-O"),
    "Z": ("", ""),
}


class RegionalPriceList(PriceList):
    """The fixed price list, at 0 % in the account's region's VAT category."""

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing:
        category = REGIONS[account.tax_region]
        self.calls += 1
        fees = {
            code: [
                replace(fee, tax_category=category, tax_rate=Decimal(0))
                for fee in self.fees.get(code, [])
            ]
            for code in plan_codes
        }
        return Pricing(fees, {}, TaxRate(category, Decimal(0)))


@pytest.fixture(scope="module")
def schematron() -> Iterator[SchematronWorker]:
    with SchematronWorker() as worker:
        yield worker


@pytest.fixture
async def regional_world(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[World]:
    clock = ManualClock(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    settings = invoicing_settings(database)
    async with serve_world(
        settings,
        database,
        redis_client,
        clock,
        pricer=RegionalPriceList(),
        renderer=ModelRenderer(),
    ) as world:
        yield world


async def _documents_valid(
    world: World, schematron: SchematronWorker, *, invoice_id: str = "", credit_note_id: str = ""
) -> None:
    for fmt in (pb.DOCUMENT_FORMAT_UBL, pb.DOCUMENT_FORMAT_CII, pb.DOCUMENT_FORMAT_FACTURX):
        document = await world.stub.GetInvoiceDocument(
            pb.GetInvoiceDocumentRequest(
                invoice_id=invoice_id, credit_note_id=credit_note_id, format=fmt
            )
        )
        xml = document.content
        if fmt == pb.DOCUMENT_FORMAT_FACTURX:
            xml = embedded_xml(xml)
        report = validate(xml, schematron)
        assert report.errors == (), (fmt, report.summary())


@pytest.mark.slow
async def test_zero_vat_categories_reach_the_invoice_and_valid_e_invoices(
    regional_world: World, schematron: SchematronWorker
) -> None:
    world = regional_world
    accounts = {}
    for region in REGIONS:
        customer_id, account_id = await world.account(
            tax_region=region, vat_id=BUYER_VAT_IDS.get(region, "")
        )
        await world.subscription_change(
            account_id,
            customer_id,
            SubscriptionChangeKind.CREATED,
            world.clock.now(),
            subscription_id=new_id("sub"),
        )
        await world.usage(account_id, datetime(2027, 1, 15, 12, tzinfo=UTC), ["1.00", "2.00"])
        accounts[region] = account_id
    await world.processed(4 * len(REGIONS))
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(bill_cycle_day=1), auto_accept=True)
    )
    await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)

    invoices = {}
    for region, account_id in accounts.items():
        category = REGIONS[region]
        (found,) = (
            await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
        ).invoices
        invoice = (
            await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=found.invoice_id))
        ).invoice
        invoices[region] = invoice
        assert {line.tax_category for line in invoice.lines} == {category}, region
        assert (
            amount(invoice.total_net),
            amount(invoice.total_tax),
            amount(invoice.total_gross),
        ) == (Decimal("66.00"), Decimal(0), Decimal("66.00")), region
        (group,) = invoice.vat_breakdown
        assert (group.tax_category, Decimal(group.tax_rate)) == (category, Decimal(0))
        assert (amount(group.taxable_amount), amount(group.tax_amount)) == (
            Decimal("66.00"),
            Decimal(0),
        )
        assert group.exemption_reason == REASONS[category][0]
        await _documents_valid(world, schematron, invoice_id=invoice.invoice_id)

    # The UBL says what EN 16931 asks of each category.
    ubl: dict[str, bytes] = {}
    for region, invoice in invoices.items():
        document = await world.stub.GetInvoiceDocument(
            pb.GetInvoiceDocumentRequest(
                invoice_id=invoice.invoice_id, format=pb.DOCUMENT_FORMAT_UBL
            )
        )
        ubl[region] = document.content

    def ubl_of(region: str) -> bytes:
        return ubl[region]

    assert b"<cbc:TaxExemptionReasonCode>VATEX-EU-IC<" in ubl_of("BE-B2B")
    assert b"<cbc:IdentificationCode>BE</cbc:IdentificationCode>" in ubl_of("BE-B2B")  # BT-80
    assert b"<cbc:CompanyID>BE0477472701</cbc:CompanyID>" in ubl_of("BE-B2B")  # BT-48
    assert b"<cbc:CompanyID>DE136695976</cbc:CompanyID>" in ubl_of("DE-RC")
    assert b"<cbc:TaxExemptionReasonCode>VATEX-EU-AE<" in ubl_of("DE-RC")
    assert b"<cbc:TaxExemptionReason>Exempt from VAT<" in ubl_of("NL-MED")
    assert b"NL859123456B01" not in ubl_of("NL-OUT")  # BR-O-02: no seller VAT id

    # A credit note of the intra-community invoice: 6.00 net, K 0 %.
    credited = await world.stub.CreateCreditNote(
        pb.CreateCreditNoteRequest(
            invoice_id=invoices["BE-B2B"].invoice_id,
            reason="Service interruption",
            amount=money_pb2.Money(currency_code="EUR", units=6),
            request_id="cn-k",
        )
    )
    note = credited.credit_note
    assert (amount(note.total_net), amount(note.total_gross)) == (Decimal(6), Decimal(6))
    assert amount(credited.invoice.amount_due) == Decimal(60)
    await _documents_valid(world, schematron, credit_note_id=note.credit_note_id)


@pytest.mark.slow
async def test_a_top_up_receipt_stands_alone_and_is_a_valid_e_invoice(
    world: World, schematron: SchematronWorker
) -> None:
    """A 50.00 top-up (O) pending beside a 5.00 late fee (S 21 %): the first immediate
    invoice is the late fee (5.00 + 1.05 VAT = 6.05), the second the receipt (50.00, no
    VAT, no VAT identifiers), each a valid e-invoice (BR-O-11: O stands alone)."""
    _, account_id = await world.account()
    await world.processed(2)
    for kind, value, request_id in (
        (pb.LINE_KIND_TOP_UP, 50, "top-up"),
        (pb.LINE_KIND_LATE_FEE, 5, "late-fee"),
    ):
        await world.stub.AddPendingItem(
            pb.AddPendingItemRequest(
                account_id=account_id, description=request_id, kind=kind,
                amount=money_pb2.Money(currency_code="EUR", units=value),
                request_id=request_id,
            )
        )  # fmt: skip
    totals = []
    for request_id in ("first", "second"):
        reply = await world.stub.CreateImmediateInvoice(
            pb.CreateImmediateInvoiceRequest(
                account_id=account_id, finalize=True, request_id=request_id
            )
        )
        invoice = reply.invoice
        totals.append(
            (
                [group.tax_category for group in invoice.vat_breakdown],
                amount(invoice.total_gross),
            )
        )
        await _documents_valid(world, schematron, invoice_id=invoice.invoice_id)
    assert totals == [(["S"], Decimal("6.05")), (["O"], Decimal("50.00"))]


def _unbilled(world: World, table: object, account_id: str) -> tuple[int, int]:
    """(rows of the account, of which not taken by any invoice)."""
    with world.engine.connect() as connection:
        taken = [
            invoice_id
            for (invoice_id,) in connection.execute(
                select(table.c.invoice_id).where(table.c.account_id == account_id)  # type: ignore[attr-defined]
            )
        ]
    return len(taken), sum(invoice_id is None for invoice_id in taken)


@pytest.mark.slow
async def test_no_invoice_in_k_or_ae_without_the_buyers_vat_id_until_it_is_set(
    regional_world: World, schematron: SchematronWorker
) -> None:
    """An intra-community supply (K) to a customer without ``vat_id`` would be an invalid
    e-invoice (BR-IC-02): the run fails that account's work item with
    BUYER_VAT_ID_REQUIRED, writes nothing of it (no number, usage unbilled), invoices the
    reverse-charge account beside it that has its VAT id, and so does
    CreateImmediateInvoice. Once accounts' ``CustomerUpdated`` brings the VAT id, the next
    run invoices the same 66.00 (+ the 5.00 pending fee) as a valid e-invoice."""
    world = regional_world
    accounts: dict[str, tuple[str, str]] = {}
    for region, vat_id in (("BE-B2B", ""), ("DE-RC", BUYER_VAT_IDS["DE-RC"])):
        customer_id, account_id = await world.account(tax_region=region, vat_id=vat_id)
        await world.subscription_change(
            account_id,
            customer_id,
            SubscriptionChangeKind.CREATED,
            world.clock.now(),
            subscription_id=new_id("sub"),
        )
        await world.usage(account_id, datetime(2027, 1, 15, 12, tzinfo=UTC), ["1.00", "2.00"])
        accounts[region] = (customer_id, account_id)
    await world.processed(8)
    customer_k, account_k = accounts["BE-B2B"]

    # The immediate invoice of a K fee is refused the same way, and writes nothing.
    await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(
            account_id=account_k, description="Installation", amount=eur("5"),
            kind=pb.LINE_KIND_ONE_TIME, tax_category="K", tax_rate="0",
            request_id="fee-k",
        )
    )  # fmt: skip
    reason, _ = await refused(
        world.stub.CreateImmediateInvoice(
            pb.CreateImmediateInvoiceRequest(account_id=account_k, finalize=True, request_id="i")
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "BUYER_VAT_ID_REQUIRED"
    pending = _unbilled(world, pending_items, account_k)  # the fee and the subscription's
    assert pending[0] == pending[1] >= 2

    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(bill_cycle_day=1), auto_accept=True)
    )
    run = await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    assert (run.accounts_total, run.invoices_finalized, run.accounts_failed) == (2, 1, 1)
    (error,) = run.errors
    assert (error.account_id, error.reason) == (account_k, "BUYER_VAT_ID_REQUIRED")
    assert customer_k in error.message
    assert "K (intra-community supply)" in error.message
    found = await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_k))
    assert list(found.invoices) == []
    (reverse_charge,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=accounts["DE-RC"][1]))
    ).invoices
    assert reverse_charge.number == "INV-2027-000001"  # the refused account took no number
    assert _unbilled(world, rated_usage, account_k) == (2, 2)
    assert _unbilled(world, pending_items, account_k) == pending

    await world.publish("accounts", _vat_id_set(customer_k, BUYER_VAT_IDS["BE-B2B"], world))
    await world.processed(9)
    again = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(account_id=account_k), auto_accept=True)
    )
    run = await run_to(world, again.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    assert (run.invoices_finalized, run.accounts_failed) == (1, 0)
    (billed,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_k))
    ).invoices
    assert billed.number == "INV-2027-000002"
    assert amount(billed.total_gross) == Decimal("71.00")  # 66.00 + the 5.00 fee, K 0 %
    assert _unbilled(world, rated_usage, account_k) == (2, 0)
    assert _unbilled(world, pending_items, account_k) == (pending[0], 0)
    await _documents_valid(world, schematron, invoice_id=billed.invoice_id)


def _vat_id_set(customer_id: str, vat_id: str, world: World) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id=customer_id,
        changed_fields=("vat_id",),
        display_name="Ada Lovelace",
        email="ada@example.com",
        phone_number="",
        language_code="nl",
        reseller_id="",
        group_id="",
        update_time=world.clock.now(),
        vat_id=vat_id,
    )


@pytest.mark.slow
async def test_a_k_draft_is_not_finalised_once_the_vat_id_is_gone(
    regional_world: World, schematron: SchematronWorker
) -> None:
    """Drafted while the customer had a VAT id, accepted after accounts removed it: the
    accept refuses that draft (item FAILED, BUYER_VAT_ID_REQUIRED, no number), and so does
    FinalizeInvoice until the VAT id is back."""
    world = regional_world
    customer_id, account_id = await world.account(
        tax_region="BE-B2B", vat_id=BUYER_VAT_IDS["BE-B2B"]
    )
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=new_id("sub"),
    )
    await world.processed(3)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(account_id=account_id))
    )
    run_id = started.bill_run.bill_run_id
    await run_to(world, run_id, pb.BILL_RUN_STATE_DRAFTED)
    await world.publish("accounts", _vat_id_set(customer_id, "", world))
    await world.processed(4)
    world.clock.set(datetime(2027, 2, 1, 7, 0, tzinfo=UTC))
    await world.stub.AcceptBillRun(pb.AcceptBillRunRequest(bill_run_id=run_id))
    run = await run_to(world, run_id, pb.BILL_RUN_STATE_ACCEPTED)
    assert (run.invoices_finalized, run.accounts_failed) == (0, 1)
    (error,) = run.errors
    assert (error.account_id, error.reason) == (account_id, "BUYER_VAT_ID_REQUIRED")
    (draft,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    ).invoices
    assert (draft.status, draft.number) == (pb.INVOICE_STATUS_DRAFT, "")
    reason, _ = await refused(
        world.stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(invoice_id=draft.invoice_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "BUYER_VAT_ID_REQUIRED"

    await world.publish("accounts", _vat_id_set(customer_id, BUYER_VAT_IDS["BE-B2B"], world))
    await world.processed(5)
    world.clock.set(datetime(2027, 2, 1, 8, 0, tzinfo=UTC))
    final = (
        await world.stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(invoice_id=draft.invoice_id))
    ).invoice
    assert final.number == "INV-2027-000001"
    await _documents_valid(world, schematron, invoice_id=final.invoice_id)
