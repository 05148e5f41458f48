"""GetInvoiceDocument: a bill run's invoice (with a proration credit) and a credit note as
UBL and CII pass the official XSDs and the EN 16931 Schematron rules; PDF and HTML render."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import SubscriptionChangeKind
from services.common.ids import new_id
from services.invoicing.documents.validation import SchematronWorker, validate
from tests.integration.invoicing.conftest import World
from tests.integration.invoicing.test_invoices import refused, run_to


@pytest.fixture(scope="module")
def schematron() -> Iterator[SchematronWorker]:
    with SchematronWorker() as worker:
        yield worker


@pytest.mark.slow
async def test_invoice_and_credit_note_documents_are_valid_en16931(
    world: World, schematron: SchematronWorker
) -> None:
    customer_id, account_id = await world.account()
    subscription = new_id("sub")
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=subscription,
    )
    # 10 January: basic from then, 22/31 days: 22.00. 20 January: basic -> pro, 12 days left:
    # credit 31 x 12/31 = 12.00, charge 62 x 12/31 = 24.00.
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.PLAN_CHANGED,
        datetime(2027, 1, 20, 10, tzinfo=UTC),
        subscription_id=subscription,
        plan="pro",
        old_plan="basic",
    )
    await world.usage(
        account_id, datetime(2027, 1, 15, 12, tzinfo=UTC), ["0.0149", "0.0251", "0.1"]
    )
    await world.processed(5)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(account_id=account_id), auto_accept=True)
    )
    await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)
    (invoice,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    ).invoices
    lines = (
        await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
    ).invoice.lines
    assert sorted(
        line.net_amount.units for line in lines if line.kind == pb.LINE_KIND_PRORATION
    ) == [-12, 22, 24]

    for fmt in (pb.DOCUMENT_FORMAT_UBL, pb.DOCUMENT_FORMAT_CII):
        document = await world.stub.GetInvoiceDocument(
            pb.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=fmt)
        )
        report = validate(document.content, schematron)
        assert report.ok, report.summary()
        assert document.file_name.startswith(invoice.number)
    pdf = await world.stub.GetInvoiceDocument(
        pb.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=pb.DOCUMENT_FORMAT_PDF)
    )
    assert pdf.content.startswith(b"%PDF")
    assert pdf.media_type == "application/pdf"
    html = await world.stub.GetInvoiceDocument(
        pb.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=pb.DOCUMENT_FORMAT_HTML)
    )
    assert invoice.number.encode() in html.content

    credit = await world.stub.CreateCreditNote(
        pb.CreateCreditNoteRequest(invoice_id=invoice.invoice_id, reason="goodwill", full=True)
    )
    ubl = await world.stub.GetInvoiceDocument(
        pb.GetInvoiceDocumentRequest(
            credit_note_id=credit.credit_note.credit_note_id, format=pb.DOCUMENT_FORMAT_UBL
        )
    )
    report = validate(ubl.content, schematron)
    assert report.ok, report.summary()
    assert b"CreditNote" in ubl.content
    assert invoice.number.encode() in ubl.content


async def test_a_draft_has_no_document(world: World) -> None:
    _, account_id = await world.account()
    await world.processed(2)
    await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(account_id=account_id, description="Setup", amount=_eur(5))
    )
    draft = await world.stub.CreateImmediateInvoice(
        pb.CreateImmediateInvoiceRequest(account_id=account_id)
    )
    reason, _ = await refused(
        world.stub.GetInvoiceDocument(
            pb.GetInvoiceDocumentRequest(
                invoice_id=draft.invoice.invoice_id, format=pb.DOCUMENT_FORMAT_PDF
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "INVALID_INVOICE_STATUS"


def _eur(units: int) -> object:
    from google.type import money_pb2

    return money_pb2.Money(currency_code="EUR", units=units)
