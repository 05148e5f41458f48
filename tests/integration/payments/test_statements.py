"""camt.053 import: matched, partial, unmatched and duplicate lines; the reconciliation report."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.payments.domain.model import Channel, MethodKind
from services.payments.service_layer.commands import AddPaymentMethod
from services.payments.service_layer.invoice_events import (
    IssuedInvoice,
    invoice_reference,
    on_invoice_issued,
)
from services.payments.service_layer.statements import Statements
from tests.integration.payments.conftest import PaymentsWorld, eur

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def entry(
    ref: str, amount: str, reference: str, *, structured: bool = True, ccy: str = "EUR"
) -> str:
    remittance = (
        f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{reference}</Ref>"
        "</CdtrRefInf></Strd>"
        if structured
        else f"<Ustrd>{reference}</Ustrd>"
    )
    return f"""
    <Ntry><NtryRef>{ref}</NtryRef><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>
      <Sts>BOOK</Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt>
      <AcctSvcrRef>{ref}</AcctSvcrRef>
      <NtryDtls><TxDtls><RltdPties><Dbtr><Nm>Ada Lovelace</Nm></Dbtr></RltdPties>
      <RmtInf>{remittance}</RmtInf></TxDtls></NtryDtls></Ntry>"""


def statement(*entries: str) -> bytes:
    debit = """<Ntry><Amt Ccy="EUR">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>
      <BookgDt><Dt>2026-03-02</Dt></BookgDt></Ntry>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}"><BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId>
<CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr><Stmt><Id>STMT-2026-03-02</Id>
<Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id></Acct>{"".join(entries)}{debit}</Stmt>
</BkToCstmrStmt></Document>""".encode()


def issue(world: PaymentsWorld, invoice_id: str, account: str, amount: str, number: str) -> str:
    world.invoicing.issue(invoice_id, account, amount)
    on_invoice_issued(
        world.collector,
        IssuedInvoice(
            f"evt-{invoice_id}",
            invoice_id,
            number,
            account,
            f"cus_{account}",
            "EUR",
            eur(amount),
            date(2026, 3, 15),
            False,
        ),
    )
    return invoice_reference(number, invoice_id)


@pytest.fixture
def statements(world: PaymentsWorld) -> Statements:
    return Statements(world.collector.uow_factory, world.collector, world.invoicing, world.clock)


def test_transfers_are_matched_by_reference_and_amount(
    world: PaymentsWorld, statements: Statements
) -> None:
    full = issue(world, "inv1", "acc1", "100.00", "INV-2026-000001")
    part = issue(world, "inv2", "acc2", "80.00", "INV-2026-000002")
    paid = issue(world, "inv3", "acc3", "10.00", "INV-2026-000003")
    world.invoicing.record_payment(
        request_id="x", payment_id="p0", allocations=[("inv3", eur("10"))]
    )
    transfer = world.methods.add_method(
        AddPaymentMethod("acc4", "cus_acc4", "EUR", MethodKind.BANK_TRANSFER)
    )
    world.invoicing.issue("inv4", "acc4", "30.00")
    spaced = " ".join(full[i : i + 4] for i in range(0, len(full), 4))
    document = statement(
        entry("E1", "100.00", spaced),
        entry("E2", "50.00", f"Invoice payment {part} thanks", structured=False),
        entry("E3", "10.00", paid),
        entry("E4", "12.00", "RF00NOPE"),
        entry("E5", "7.00", "", structured=False),
        entry("E6", "45.00", transfer.payment_reference),
    )
    statement_id, lines = statements.import_camt053(document)
    assert statement_id == "STMT-2026-03-02"
    outcome = {line.entry.entry_reference: line.outcome for line in lines}
    assert outcome == {
        "E1": "MATCHED",
        "E2": "PARTIAL",
        "E3": "UNMATCHED",
        "E4": "UNMATCHED",
        "E5": "UNMATCHED",
        "E6": "MATCHED",
        "STMT-2026-03-02:0:6": "IGNORED",  # the bank's fee: money going out
    }
    reasons = {line.entry.entry_reference: line.reason for line in lines}
    assert "already paid" in reasons["E3"]
    assert "no payment reference" in reasons["E5"]
    assert world.invoicing.due("inv1") == eur("0")
    assert world.invoicing.due("inv2") == eur("30.00")
    assert world.invoicing.due("inv4") == eur("0")
    assert world.invoicing.credit["acc4"] == eur("15.00")
    # The same statement again records nothing new.
    _, again = statements.import_camt053(document)
    assert {line.outcome for line in again} == {"DUPLICATE", "IGNORED"}
    assert world.invoicing.due("inv2") == eur("30.00")

    report = statements.reconciliation(date(2026, 3, 1))
    (transfers,) = report
    assert transfers.channel is Channel.BANK_TRANSFER
    assert (transfers.payments, transfers.collected) == (3, Money.of("195.00", "EUR"))


def test_a_document_that_is_not_camt053_is_refused(statements: Statements) -> None:
    with pytest.raises(InvalidArgument) as refused:
        statements.import_camt053(b"<Document><Nothing/></Document>")
    assert refused.value.violations[0].field == "camt053"
    with pytest.raises(InvalidArgument):
        statements.import_camt053(b"not xml")


def test_a_batch_entry_pending_and_reversed_entries_and_a_quoted_invoice_number(
    world: PaymentsWorld, statements: Statements
) -> None:
    issue(world, "inv1", "acc1", "25.00", "INV-2026-000011")
    ref2 = issue(world, "inv2", "acc2", "40.00", "INV-2026-000012")
    document = f"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S8</Id>
 <Ntry><NtryRef>B1</NtryRef><Amt Ccy="EUR">65.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
  <Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt>
  <NtryDtls>
   <TxDtls><AmtDtls><TxAmt><Amt Ccy="EUR">25.00</Amt></TxAmt></AmtDtls>
    <RmtInf><Ustrd>Payment for invoice INV-2026-000011, thank you</Ustrd></RmtInf></TxDtls>
   <TxDtls><AmtDtls><TxAmt><Amt Ccy="EUR">40.00</Amt></TxAmt></AmtDtls>
    <RmtInf><Strd><CdtrRefInf><Ref>{ref2}</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>
  </NtryDtls></Ntry>
 <Ntry><NtryRef>P1</NtryRef><Amt Ccy="EUR">9.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
  <Sts><Cd>PDNG</Cd></Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt></Ntry>
 <Ntry><NtryRef>R1</NtryRef><Amt Ccy="EUR">9.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
  <RvslInd>true</RvslInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt></Ntry>
</Stmt></BkToCstmrStmt></Document>""".encode()
    statement_id, lines = statements.import_camt053(document)
    assert statement_id == "S8"
    assert [(line.entry.entry_reference, line.outcome) for line in lines] == [
        ("B1/1", "MATCHED"),
        ("B1/2", "MATCHED"),
        ("P1", "IGNORED"),  # pending: only booked entries count
        ("R1", "IGNORED"),  # a reversal
    ]
    assert "not booked" in lines[2].reason
    assert world.invoicing.due("inv1") == eur("0")
    assert world.invoicing.due("inv2") == eur("0")


def test_the_invoice_event_brings_the_group_whose_retry_schedule_applies(
    world: PaymentsWorld,
) -> None:
    world.methods.set_retry_schedule("smb", [2, 4])
    world.card("acc9", "4000000000009995")  # insufficient funds
    world.invoicing.issue("inv9", "acc9", "10")
    payment = on_invoice_issued(
        world.collector,
        IssuedInvoice(
            "evt-9",
            "inv9",
            "INV-9",
            "acc9",
            "cus_acc9",
            "EUR",
            eur("10"),
            date(2026, 3, 15),
            False,
            group_id="smb",
        ),
    )
    assert payment is not None
    assert payment.retry_days == "2,4"
    assert payment.next_retry_at == world.clock.now() + timedelta(days=2)


def test_an_invoice_paid_before_its_event_is_consumed_is_not_charged(
    world: PaymentsWorld,
) -> None:
    world.card("acc7")
    world.invoicing.issue("inv7", "acc7", "10")
    world.invoicing.record_payment(
        request_id="desk", payment_id="p", allocations=[("inv7", eur("10"))]
    )
    late = on_invoice_issued(
        world.collector,
        IssuedInvoice(
            "evt-7",
            "inv7",
            "INV-7",
            "acc7",
            "cus_acc7",
            "EUR",
            eur("10"),
            date(2026, 3, 15),
            False,
        ),
    )
    assert late is None
    assert world.sandbox.charges_made == 0


def test_camt053_004_batch_with_a_debit_a_national_reference_and_a_datetime_booking(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref1 = issue(world, "inv1", "acc1", "25.00", "INV-2026-000021")
    document = f"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S4</Id>
 <Ntry><Amt Ccy="EUR">20.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
  <Sts>BOOK</Sts><BookgDt><DtTm>2026-03-02T10:11:12</DtTm></BookgDt>
  <AcctSvcrRef>BATCH-7</AcctSvcrRef>
  <NtryDtls>
   <TxDtls><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
    <RltdPties><Dbtr><Nm>Ada</Nm></Dbtr></RltdPties>
    <RmtInf><Ustrd>see {ref1}</Ustrd>
     <Strd><CdtrRefInf><Tp><CdOrPrtry><Prtry>ISR</Prtry></CdOrPrtry></Tp>
      <Ref>210000000003139471430009017</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>
   <TxDtls><Amt Ccy="EUR">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>
    <RmtInf><Ustrd>fee</Ustrd></RmtInf></TxDtls>
  </NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>""".encode()
    _, lines = statements.import_document(document)
    assert [(line.entry.entry_reference, line.outcome) for line in lines] == [
        ("BATCH-7/1", "MATCHED"),
        ("BATCH-7/2", "IGNORED"),
    ]
    assert lines[0].entry.reference == ref1
    assert lines[0].entry.booked_on == date(2026, 3, 2)
    assert "money going out" in lines[1].reason
    assert world.invoicing.due("inv1") == eur("0")


def test_a_camt054_notification_and_a_batch_booked_without_its_amounts(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref1 = issue(world, "inv1", "acc1", "25.00", "INV-2026-000031")
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>N1</MsgId><CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr>
<Ntfctn><Id>NTF-1</Id><CreDtTm>2026-03-02T18:00:00</CreDtTm>
 <Ntry><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
  <ValDt><Dt>2026-03-02</Dt></ValDt><AcctSvcrRef>N-1</AcctSvcrRef>
  <NtryDtls><TxDtls><RmtInf><Strd><CdtrRefInf><Ref>{ref1}</Ref></CdtrRefInf></Strd>
  </RmtInf></TxDtls></NtryDtls></Ntry>
 <Ntry><Amt Ccy="EUR">70.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
  <BookgDt><Dt>2026-03-02</Dt></BookgDt><AcctSvcrRef>N-2</AcctSvcrRef>
  <NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>
   <TxDtls><RmtInf><Ustrd>first</Ustrd></RmtInf></TxDtls>
   <TxDtls><RmtInf><Ustrd>second</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>""".encode()
    statement_id, lines = statements.import_document(document)
    assert statement_id == "NTF-1"
    assert [(line.entry.entry_reference, line.outcome) for line in lines] == [
        ("N-1", "MATCHED"),  # booked on its value date: the bank gave no booking date
        ("N-2", "UNMATCHED"),
    ]
    assert lines[0].entry.booked_on == date(2026, 3, 2)
    assert "allocate by hand" in lines[1].reason
    assert world.invoicing.due("inv1") == eur("0")


def test_a_camt053_in_a_business_application_header_envelope(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref = issue(world, "inv1", "acc1", "100.00", "INV-2026-000041")
    inner = statement(entry("W1", "100.00", ref)).decode().split("?>", 1)[1]
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
<BizMsgEnvlp><AppHdr xmlns="urn:iso:std:iso:20022:tech:xsd:head.001.001.02">
<BizMsgIdr>B1</BizMsgIdr></AppHdr>{inner}</BizMsgEnvlp>""".encode()
    _, lines = statements.import_document(document)
    assert (lines[0].entry.entry_reference, lines[0].outcome) == ("W1", "MATCHED")
    assert lines[1].outcome == "IGNORED"  # the statement's debit line
