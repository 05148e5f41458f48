"""An issued invoice's document never changes (ADR 0075): after the customer is renamed
and its VAT id and e-mail change (accounts' ``CustomerUpdated``), the invoice and its
credit note render exactly as they did when they were issued; the next invoice shows
the new facts.

The customer "Ada Lovelace" (ada@example.com, NL000099998B57) is billed on 1 February;
on 3 February accounts publishes two updates: one that says it happened on 20 January
(before the invoice was finalised, but invoicing learnt it only now) and one of
3 February. The invoice of 1 March shows the last of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO

from lxml import etree
from pypdf import PdfReader

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.accounts.domain.events import CustomerUpdated, SubscriptionChangeKind
from services.common.ids import new_id
from tests.integration.invoicing.conftest import World
from tests.integration.invoicing.test_invoices import run_to

OLD_VAT_ID, NEW_VAT_ID = "NL000099998B57", "NL000099999B57"
NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
FORMATS = (
    pb.DOCUMENT_FORMAT_UBL,
    pb.DOCUMENT_FORMAT_CII,
    pb.DOCUMENT_FORMAT_HTML,
    pb.DOCUMENT_FORMAT_PDF,
    pb.DOCUMENT_FORMAT_FACTURX,
)


async def _month_of_basic(world: World) -> tuple[str, str]:
    customer_id, account_id = await world.account(vat_id=OLD_VAT_ID)
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=new_id("sub"),
    )
    await world.processed(3)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    return customer_id, account_id


async def _bill(world: World, account_id: str) -> None:
    started = await world.stub.StartBillRun(
        pb.StartBillRunRequest(scope=pb.BillRunScope(account_id=account_id), auto_accept=True)
    )
    await run_to(world, started.bill_run.bill_run_id, pb.BILL_RUN_STATE_ACCEPTED)


async def _documents(world: World, **target: str) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for fmt in FORMATS:
        reply = await world.stub.GetInvoiceDocument(
            pb.GetInvoiceDocumentRequest(format=fmt, **target)
        )
        found[fmt] = reply.content
    return found


def _canonical(xml: bytes) -> bytes:
    return etree.tostring(etree.fromstring(xml), method="c14n")


def _ubl_buyer(xml: bytes) -> tuple[str, str, str]:
    party = etree.fromstring(xml).find("cac:AccountingCustomerParty/cac:Party", NS)
    assert party is not None

    def text(path: str) -> str:
        found = party.findtext(path, namespaces=NS)
        assert found is not None, path
        return found

    return (
        text("cac:PartyLegalEntity/cbc:RegistrationName"),
        text("cac:PartyTaxScheme/cbc:CompanyID"),
        text("cbc:EndpointID"),
    )


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)


def _updated(customer_id: str, name: str, email: str, vat_id: str, at: datetime) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id=customer_id,
        changed_fields=("display_name", "email", "vat_id"),
        display_name=name,
        email=email,
        phone_number="",
        language_code="nl",
        reseller_id="",
        group_id="",
        update_time=at,
        vat_id=vat_id,
    )


def _assert_same(before: dict[int, bytes], after: dict[int, bytes]) -> None:
    for fmt in (pb.DOCUMENT_FORMAT_UBL, pb.DOCUMENT_FORMAT_CII):
        assert _canonical(after[fmt]) == _canonical(before[fmt])
        assert after[fmt] == before[fmt]
    assert after[pb.DOCUMENT_FORMAT_HTML] == before[pb.DOCUMENT_FORMAT_HTML]
    # WeasyPrint stamps each PDF with the time it was made: the content is what must match.
    for fmt in (pb.DOCUMENT_FORMAT_PDF, pb.DOCUMENT_FORMAT_FACTURX):
        assert _pdf_text(after[fmt]) == _pdf_text(before[fmt])


async def test_renaming_the_customer_leaves_issued_documents_as_they_were(world: World) -> None:
    customer_id, account_id = await _month_of_basic(world)
    await _bill(world, account_id)
    (february,) = (
        await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
    ).invoices
    credit = await world.stub.CreateCreditNote(
        pb.CreateCreditNoteRequest(invoice_id=february.invoice_id, reason="goodwill", full=True)
    )
    note_id = credit.credit_note.credit_note_id
    invoice_before = await _documents(world, invoice_id=february.invoice_id)
    note_before = await _documents(world, credit_note_id=note_id)
    assert _ubl_buyer(invoice_before[pb.DOCUMENT_FORMAT_UBL]) == (
        "Ada Lovelace",
        OLD_VAT_ID,
        "ada@example.com",
    )
    assert "Ada Lovelace" in _pdf_text(invoice_before[pb.DOCUMENT_FORMAT_PDF])

    world.clock.set(datetime(2027, 2, 3, 9, 0, tzinfo=UTC))
    # Learnt after the invoice was issued, though said to be in force before it.
    await world.publish(
        "accounts",
        _updated(
            customer_id,
            "Ada Backdated",
            "backdated@example.com",
            "NL000099997B57",
            datetime(2027, 1, 20, tzinfo=UTC),
        ),
    )
    await world.publish(
        "accounts",
        _updated(customer_id, "Ada King", "ada.king@example.com", NEW_VAT_ID, world.clock.now()),
    )
    await world.processed(5)

    _assert_same(invoice_before, await _documents(world, invoice_id=february.invoice_id))
    _assert_same(note_before, await _documents(world, credit_note_id=note_id))

    world.clock.set(datetime(2027, 3, 1, 6, 0, tzinfo=UTC))
    await _bill(world, account_id)
    (march,) = [
        invoice
        for invoice in (
            await world.stub.SearchInvoices(pb.SearchInvoicesRequest(account_id=account_id))
        ).invoices
        if invoice.invoice_id != february.invoice_id
    ]
    after = await _documents(world, invoice_id=march.invoice_id)
    assert _ubl_buyer(after[pb.DOCUMENT_FORMAT_UBL]) == (
        "Ada King",
        NEW_VAT_ID,
        "ada.king@example.com",
    )
    assert "Ada King" in _pdf_text(after[pb.DOCUMENT_FORMAT_PDF])
    assert "Ada Lovelace" not in after[pb.DOCUMENT_FORMAT_HTML].decode()
