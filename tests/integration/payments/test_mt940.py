"""MT940 statements in several banks' flavours, matched like camt.053 (SQLite and PostgreSQL).

The files are written the way the banks send them: German structured ``:86:``
sub-fields (``?20``-``?29``, ``SVWZ+``/``EREF+``, a reference wrapped over two
sub-fields), ING's SWIFT blocks with ``/REMI/STRD/CUR/`` and ``/REMI/USTD//``, ABN
AMRO's ``/TRTP/.../NAME/.../REMI/``, a free-text ``:86:``, several statements in one
file, debits and reversals, a statement in another currency, CRLF line ends.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.payments.adapters.orm import metadata
from services.payments.domain.model import Channel, MethodKind
from services.payments.service_layer.commands import AddPaymentMethod
from services.payments.service_layer.statement_files import looks_like_mt940, parse_mt940
from services.payments.service_layer.statements import Statements
from tests.integration.payments.conftest import PaymentsWorld, eur
from tests.integration.payments.test_statements import issue


@pytest.fixture
def statements(world: PaymentsWorld) -> Statements:
    return Statements(world.collector.uow_factory, world.collector, world.invoicing, world.clock)


def spaced(reference: str) -> str:
    return " ".join(reference[i : i + 4] for i in range(0, len(reference), 4))


def sparkasse(ref: str) -> bytes:
    """A German savings bank: structured :86: with GVC codes, the reference wrapped."""
    wrapped = spaced(ref)
    head, tail = wrapped[:12], wrapped[12:]
    return (
        ":20:STARTUMSE\r\n"
        ":25:37040044/0532013000\r\n"
        ":28C:00042/001\r\n"
        ":60F:C260301EUR1000,00\r\n"
        ":61:2603020302C100,00NMSCNONREF//SPK-0302-0001\r\n"
        ":86:166?00SEPA-GUTSCHRIFT?109310?20EREF+E2E-0001?21SVWZ+"
        f"{head}?22{tail} Rechnung?30COBADEFFXXX?31DE89370400440532013000\r\n"
        "?32Ada Lovelace\r\n"
        ":61:2603020302D12,50NMSCNONREF//SPK-0302-0002\r\n"
        ":86:805?00ENTGELT?20Kontofuehrung?32Sparkasse\r\n"
        ":61:2603020302RD30,00NMSCNONREF//SPK-0302-0003\r\n"
        ":86:109?00RUECKLASTSCHRIFT?20SVWZ+Lastschrift zurueck\r\n"
        ":62F:C260302EUR1117,50\r\n"
        "-\r\n"
    ).encode("latin-1")


def ing(structured_ref: str, invoice_number: str) -> bytes:
    """ING Netherlands: SWIFT blocks, /EREF/ /CNTP/ /REMI/ codes, two statements."""
    header = "{1:F01INGBNL2AXXXX0000000000}{2:O9401200260302INGBNL2AXXXX00000000002603021200N}"
    return f"""{header}{{4:
:20:P260302000000001
:25:NL20INGB0001234567EUR
:28C:00061
:60F:C260301EUR2000,00
:61:260302C100,00NTRFEREF//00000012345678
/TRCD/00100/
:86:/EREF/E2E-ING-1//CNTP/NL91ABNA0417164300/ABNANL2A/A. Lovelace///REMI/STRD/
CUR/{structured_ref}//
:61:260302C45,00NTRFNONREF//00000012345679
:86:/EREF/NOTPROVIDED//CNTP/NL91ABNA0417164300/ABNANL2A/C. Babbage///REMI/USTD//
Betaling factuur {invoice_number}/
:62F:C260302EUR2145,00
-}}{header.replace("260302", "260303")}{{4:
:20:P260303000000001
:25:NL20INGB0001234567EUR
:28C:00062
:60F:C260302EUR2145,00
:61:260303C7,00NTRFNONREF//00000012345680
:86:/EREF/NOTPROVIDED//CNTP/NL91ABNA0417164300/ABNANL2A/Unknown payer///REMI/USTD//
gift/
:61:260303D20,00NTRFNONREF//00000012345681
:86:/EREF/OUT-1//CNTP/NL91ABNA0417164300/ABNANL2A/Supplier///REMI/USTD//rent/
:62F:C260303EUR2132,00
-}}""".encode()


def abn_amro(ref: str) -> bytes:
    """ABN AMRO: /TRTP/ /IBAN/ /NAME/ /REMI/ on one long :86:, a statement in USD too."""
    return f""":20:ABN AMRO BANK NV
:25:417164300
:28:10301/1
:60F:C260301EUR500,00
:61:2603020302C60,00N654NONREF
:86:/TRTP/SEPA OVERBOEKING/IBAN/NL91ABNA0417164300/BIC/ABNANL2A/NAME/
G. Hopper/REMI/{ref}/EREF/NOTPROVIDED
:62F:C260302EUR560,00
-
:20:ABN AMRO BANK NV
:25:417164301
:28:10302/1
:60F:C260301USD0,00
:61:2603020302C60,00N654NONREF
:86:/TRTP/SEPA OVERBOEKING/IBAN/US12345/BIC/CHASUS33/NAME/
G. Hopper/REMI/{ref}/EREF/NOTPROVIDED
:62F:C260302USD60,00
-
""".encode()


def free_text(ref: str) -> bytes:
    """A bank that writes :86: as plain text (and its own references after //)."""
    return f""":20:STMT0302
:25:GB29NWBK60161331926819
:28C:1/1
:60F:C260301EUR0,00
:61:260302C50,00NTRF0302-01//GBR-77001
:86:BANK GIRO CREDIT FROM J SMITH
REF {spaced(ref)} THANK YOU
:62F:C260302EUR50,00
-
""".encode()


def test_a_german_savings_bank_file_structured_86(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref = issue(world, "inv1", "acc1", "100.00", "INV-2026-000101")
    document = sparkasse(ref)
    assert looks_like_mt940(document)
    statement_id, lines = statements.import_document(document)
    assert statement_id == "STARTUMSE"
    outcome = {line.entry.entry_reference: (line.outcome, line.reason) for line in lines}
    assert outcome["SPK-0302-0001"] == ("MATCHED", "paid invoice INV-inv1")
    assert outcome["SPK-0302-0002"] == ("IGNORED", "debit: money going out")
    assert outcome["SPK-0302-0003"][0] == "IGNORED"
    assert "reversal of a debit" in outcome["SPK-0302-0003"][1]
    (matched,) = [line for line in lines if line.outcome == "MATCHED"]
    assert matched.entry.reference == ref
    assert getattr(matched.entry, "debtor_name", "") == "Ada Lovelace"
    assert world.invoicing.due("inv1") == eur("0")
    payment = world.payment(matched.payment_id)
    assert payment.channel is Channel.BANK_TRANSFER
    assert payment.provider_reference == "SPK-0302-0001"
    # The same file again, in MT940 or through the other entry: nothing new.
    _, again = statements.import_mt940(document)
    assert {line.outcome for line in again} == {"DUPLICATE", "IGNORED"}
    assert world.invoicing.recorded == [(matched.payment_id, "inv1", eur("100.00"))]


def test_ing_blocks_two_statements_structured_and_free_text_references(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref = issue(world, "inv1", "acc1", "100.00", "INV-2026-000201")
    issue(world, "inv2", "acc2", "80.00", "INV-2026-000202")
    statement_id, lines = statements.import_mt940(ing(ref, "INV-2026-000202"))
    assert statement_id == "P260302000000001"
    outcome = {line.entry.entry_reference: line.outcome for line in lines}
    assert outcome == {
        "00000012345678": "MATCHED",
        "00000012345679": "PARTIAL",  # the invoice number in free text; 45 of 80
        "00000012345680": "UNMATCHED",
        "00000012345681": "IGNORED",
    }
    reasons = {line.entry.entry_reference: line.reason for line in lines}
    assert "35.00 EUR still due" in reasons["00000012345679"]
    assert reasons["00000012345680"] == "GIFT is not an RF reference"
    names = {
        line.entry.entry_reference: getattr(line.entry, "debtor_name", "")
        for line in lines
        if line.outcome != "IGNORED"
    }
    assert names["00000012345678"] == "A. Lovelace"
    assert world.invoicing.due("inv1") == eur("0")
    assert world.invoicing.due("inv2") == eur("35.00")
    # The second statement of the file is there, with its own booking date.
    (gift,) = [line for line in lines if line.entry.entry_reference == "00000012345680"]
    assert gift.entry.booked_on is not None
    assert gift.entry.booked_on.day == 3


def test_abn_amro_and_a_statement_in_another_currency(
    world: PaymentsWorld, statements: Statements
) -> None:
    ref = issue(world, "inv1", "acc1", "60.00", "INV-2026-000301")
    _, lines = statements.import_mt940(abn_amro(ref))
    assert [(line.outcome, line.entry.amount) for line in lines] == [
        ("MATCHED", eur("60.00")),
        ("UNMATCHED", Money.of("60.00", "USD")),
    ]
    assert lines[1].reason == "currency differs from the invoice's"
    assert getattr(lines[0].entry, "debtor_name", "") == "G. Hopper"
    # Without a bank reference, the line is named by account, statement and position.
    assert lines[0].entry.entry_reference == "417164300:10301/1:1"
    assert world.invoicing.due("inv1") == eur("0")


def test_free_text_details_and_an_account_reference(
    world: PaymentsWorld, statements: Statements
) -> None:
    transfer = world.methods.add_method(
        AddPaymentMethod("acc4", "cus_acc4", "EUR", MethodKind.BANK_TRANSFER)
    )
    world.invoicing.issue("inv4", "acc4", "30.00")
    _, lines = statements.import_mt940(free_text(transfer.payment_reference))
    (line,) = lines
    assert (line.entry.entry_reference, line.outcome) == ("GBR-77001", "MATCHED")
    assert world.invoicing.due("inv4") == eur("0")
    assert world.invoicing.credit["acc4"] == eur("20.00")


def test_what_is_not_mt940_is_refused_naming_the_field(statements: Statements) -> None:
    for bad in (b":20:ONLY-A-REFERENCE\n-\n", b"hello", b""):
        with pytest.raises(InvalidArgument) as refused:
            statements.import_mt940(bad)
        assert refused.value.violations[0].field == "mt940"
    assert parse_mt940(sparkasse("RF18539007547034")).statement_id == "STARTUMSE"


def test_a_latin1_file_with_umlauts(world: PaymentsWorld, statements: Statements) -> None:
    ref = issue(world, "inv1", "acc1", "5.00", "INV-2026-000501")
    document = (
        ":20:X\r\n:25:DE1/2\r\n:28C:1\r\n:60F:C260301EUR0,00\r\n"
        ":61:260302C5,00NTRFNONREF\r\n"
        f":86:166?00GUTSCHRIFT?20SVWZ+R\xfcckzahlung {ref}?32M\xfcller\r\n"
        ":62F:C260302EUR5,00\r\n-\r\n"
    ).encode("latin-1")
    _, (line,) = statements.import_mt940(document)
    assert (line.outcome, line.entry.entry_reference) == ("MATCHED", "DE1/2:1:1")
    assert getattr(line.entry, "debtor_name", "") == "M\xfcller"


def test_a_card_number_written_on_a_statement_is_never_kept(
    world: PaymentsWorld, statements: Statements
) -> None:
    issue(world, "inv1", "acc1", "5.00", "INV-2026-000601")
    mt940_file = (
        b":20:PANS\n:25:DE1/2\n:28C:9\n:60F:C260301EUR0,00\n"
        b":61:260302C5,00NTRFNONREF//PAN-1\n"
        b":86:/NAME/4242 4242 4242 4242/REMI/USTD//my card 4000-0000-0000-0002 thx/\n"
        b":62F:C260302EUR5,00\n-\n"
    )
    camt = b"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr><Stmt><Id>S</Id>
<Ntry><Amt Ccy="EUR">7.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-02</Dt></BookgDt><AcctSvcrRef>PAN-2</AcctSvcrRef><NtryDtls><TxDtls>
<RltdPties><Dbtr><Nm>Card 4000000000009995</Nm></Dbtr></RltdPties>
<RmtInf><Ustrd>pay with 4000000000000069 please</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"""
    _, lines = statements.import_mt940(mt940_file)
    _, more = statements.import_camt053(camt)
    shown = " ".join(
        f"{line.entry.reference} {getattr(line.entry, 'debtor_name', '')} {line.reason}"
        for line in [*lines, *more]
    )
    assert "****0002" in shown
    assert "****4242" in shown
    with world.engine.connect() as connection:
        stored = " ".join(
            str(value)
            for table in metadata.tables.values()
            for row in connection.execute(select(table))
            for value in row
        )
    for pan in ("4242424242424242", "4000000000000002", "4000000000009995", "4000000000000069"):
        for text in (shown, stored):
            assert pan not in text.replace(" ", "").replace("-", "")
