"""Bank statement files into statement lines: camt.053 (lxml) and MT940 (``mt-940``).

Both formats become the same ``StatementEntry`` (one incoming transfer, with the
reference the payer quoted and the bank's reference for it) and ``SkippedEntry``
(a line that is not a payment to us: a debit, a reversal, a pending entry, a
zero amount), so one matcher (``service_layer.statements``) serves both.

camt.053 is read with lxml on the document's own namespace, so camt.053.001.02 to
.08 read the same way (entities are not resolved). MT940 is parsed by wolph's
``mt-940`` (maintained, ADR 0066) with all its fixes on (``Options.all()``); its
``:86:`` details come in the banks' flavours: German structured sub-fields
(``?20``-``?29`` with ``SVWZ+``, ``EREF+``; the library splits them), SWIFT-style
codes (``/EREF/``, ``/REMI/``, ``/CNTP/``, ``/NAME/``: ING, ABN AMRO, Rabobank),
or free text. An ISO 11649 reference is looked for in the remittance first, then
anywhere in the details; without one the remittance text is kept, where the matcher
looks for an invoice number.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import mt940
from lxml import etree
from mt940 import processors as mt940_processors
from mt940.options import Options

from services.common.errors import InvalidArgument
from services.common.ids import new_id
from services.common.money import Money, MoneyError
from services.payments.domain.references import is_creditor_reference, redact_card_numbers

_RF_IN_TEXT = re.compile(r"RF\d{2}(?: ?[A-Z0-9]){1,21}")
# mt-940 logs every line it cannot read, quoting it (names, IBANs, whatever the payer
# wrote, a card number even) at ERROR: a file it refuses is answered to the caller
# instead, so its own log is kept out of the service's.
logging.getLogger("mt940").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class StatementEntry:
    """One incoming transfer of a statement."""

    entry_reference: str  # the bank's reference: the payment's request id, so imported once
    booked_on: date
    amount: Money
    reference: str  # an RF reference, or the remittance text the payer wrote
    debtor_name: str
    # Why it cannot be matched whatever it quotes (listed UNMATCHED with this reason).
    problem: str = ""

    def __post_init__(self) -> None:
        # What the payer typed is kept and shown; a card number in it never is.
        object.__setattr__(self, "reference", redact_card_numbers(self.reference))
        object.__setattr__(self, "debtor_name", redact_card_numbers(self.debtor_name))


@dataclass(frozen=True)
class SkippedEntry:
    """A statement line that is not a payment to us, listed with why (never recorded)."""

    entry_reference: str
    booked_on: date | None
    amount: Money | None
    reason: str
    reference: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", redact_card_numbers(self.reference))


@dataclass(frozen=True)
class StatementFile:
    statement_id: str
    lines: list[StatementEntry | SkippedEntry]  # in statement order

    @property
    def entries(self) -> list[StatementEntry]:
        return [line for line in self.lines if isinstance(line, StatementEntry)]

    @property
    def skipped(self) -> list[SkippedEntry]:
        return [line for line in self.lines if isinstance(line, SkippedEntry)]


def reference_in(text: str) -> str:
    """An RF reference quoted inside free text (the longest prefix whose check digits hold)."""
    for found in _RF_IN_TEXT.finditer(text.upper()):
        compact = found.group(0).replace(" ", "")
        for end in range(len(compact), 4, -1):
            if is_creditor_reference(compact[:end]):
                return compact[:end]
    return ""


def looks_like_mt940(document: bytes) -> bool:
    head = document.lstrip(b"\xef\xbb\xbf \t\r\n")[:64]
    return head.startswith((b":20:", b"{1:", b":940:")) or b"\n:20:" in document[:512]


# -- camt.053 -------------------------------------------------------------------------------
def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _find(element: etree._Element, path: str) -> etree._Element | None:
    """First descendant along ``a/b/c`` by local names, whatever the namespace."""
    current: list[etree._Element] = [element]
    for name in path.split("/"):
        current = [c for parent in current for c in parent if _local(c) == name]
        if not current:
            return None
    return current[0]


def _text(element: etree._Element, path: str) -> str:
    found = _find(element, path)
    return (found.text or "").strip() if found is not None else ""


def _money_at(element: etree._Element, paths: tuple[str, ...], field: str) -> Money | None:
    for path in paths:
        found = _find(element, path)
        if found is None:
            continue
        try:
            return Money.of(Decimal((found.text or "").strip()), found.get("Ccy") or "")
        except (InvalidOperation, MoneyError):
            raise InvalidArgument.field(field, "invalid amount or currency") from None
    return None


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in element if _local(c) == name]


def _camt_reference(tx: etree._Element) -> str:
    """The structured creditor reference, else an RF found in (or the text of) ``Ustrd``."""
    structured = [
        (ref.text or "").strip()
        for block in _children(tx, "RmtInf")
        for strd in _children(block, "Strd")
        for info in _children(strd, "CdtrRefInf")
        for ref in _children(info, "Ref")
    ]
    for ref in structured:
        if is_creditor_reference(ref):
            return ref
    unstructured = " ".join(
        (u.text or "").strip()
        for block in _children(tx, "RmtInf")
        for u in _children(block, "Ustrd")
    )
    found = reference_in(unstructured)
    if found:
        return found
    # A national structured reference (not RF) or free text: the matcher looks for a number.
    return " ".join([*structured, unstructured]).strip()


_CAMT_CONTAINERS = (
    ("BkToCstmrStmt", "Stmt"),
    ("BkToCstmrAcctRpt", "Rpt"),
    ("BkToCstmrDbtCdtNtfctn", "Ntfctn"),
)


def parse_camt053(document: bytes) -> StatementFile:
    """Every ``Stmt`` of the document; INVALID_ARGUMENT (field ``camt053``) if it is not one.

    A camt.052 account report (``Rpt``) or camt.054 notification (``Ntfctn``) is read the
    same way: their entries have the same shape.

    Only booked (``Sts`` BOOK, or no status) credits count. A pending or informational
    entry, a reversal (``RvslInd``) and a debit are listed as skipped. A batch entry with
    several ``TxDtls`` gives one line per transaction, with the transaction's own amount.
    """
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidArgument.field("camt053", f"not well-formed XML: {exc}") from None
    statements: list[etree._Element] = []
    # camt.053 statements; camt.052 reports and camt.054 notifications carry the same entries.
    for container_name, item in _CAMT_CONTAINERS:
        # Anywhere in the document: some banks wrap it (an AppHdr envelope, a ZIP's XML).
        container = next(
            (e for e in root.iter() if isinstance(e.tag, str) and _local(e) == container_name),
            None,
        )
        if container is not None:
            statements = _children(container, item)
            break
    if not statements:
        raise InvalidArgument.field("camt053", "no BkToCstmrStmt/Stmt: not a camt.053 statement")
    statement_id = _text(statements[0], "Id") or new_id("stmt")
    lines: list[StatementEntry | SkippedEntry] = []  # in statement order
    for s_index, statement in enumerate(statements):
        for index, entry in enumerate(_children(statement, "Ntry")):
            field = f"camt053.Stmt[{s_index}].Ntry[{index}]"
            entry_ref = (
                _text(entry, "AcctSvcrRef")
                or _text(entry, "NtryRef")
                or f"{statement_id}:{s_index}:{index}"
            )
            entry_amount = _money_at(entry, ("Amt",), f"{field}.Amt")
            # The booking date; some banks give only the value date or the statement's date.
            booked_text = (
                _text(entry, "BookgDt/Dt")
                or _text(entry, "BookgDt/DtTm")[:10]
                or _text(entry, "ValDt/Dt")
                or _text(entry, "ValDt/DtTm")[:10]
                or _text(statement, "CreDtTm")[:10]
                or _text(root, "GrpHdr/CreDtTm")[:10]
            )
            status = (_text(entry, "Sts/Cd") or _text(entry, "Sts")).upper()
            why_not = ""
            if status and status != "BOOK":
                why_not = f"status {status}: not booked"
            elif _text(entry, "RvslInd").lower() in ("true", "1"):
                why_not = "a reversal (RvslInd): a returned or cancelled transfer"
            if why_not:
                lines.append(
                    SkippedEntry(entry_ref, _date_or_none(booked_text), entry_amount, why_not)
                )
                continue
            try:
                booked = date.fromisoformat(booked_text)
            except ValueError:
                raise InvalidArgument.field(f"{field}.BookgDt", "missing date") from None
            entry_side = _text(entry, "CdtDbtInd")
            details = [
                tx for block in _children(entry, "NtryDtls") for tx in _children(block, "TxDtls")
            ]
            # (lxml elements without children are falsy: compare with None, never ``or``.)
            unpriced = [
                tx
                for tx in details
                if _find(tx, "AmtDtls/TxAmt/Amt") is None and _find(tx, "Amt") is None
            ]
            if len(details) > 1 and unpriced and entry_side == "CRDT" and entry_amount:
                # A batch booked as one sum without each transfer's amount: money came in,
                # but which invoice each part pays is for a person to say.
                lines.append(
                    StatementEntry(
                        entry_ref,
                        booked,
                        entry_amount,
                        "",
                        "",
                        problem=f"a batch of {len(details)} transfers without their amounts: "
                        "allocate by hand",
                    )
                )
                continue
            for t_index, tx in enumerate(details or [entry]):
                line_ref = entry_ref if len(details) <= 1 else f"{entry_ref}/{t_index + 1}"
                side = (_text(tx, "CdtDbtInd") if tx is not entry else "") or entry_side
                amount = (
                    _money_at(tx, ("AmtDtls/TxAmt/Amt", "Amt"), f"{field}.TxDtls[{t_index}]")
                    if tx is not entry
                    else None
                )
                if amount is None and len(details) <= 1:
                    amount = entry_amount
                if amount is None:
                    raise InvalidArgument.field(f"{field}.Amt", "missing amount")
                if side != "CRDT":
                    reason = (
                        "debit (DBIT): money going out"
                        if side == "DBIT"
                        else f"no credit mark ({side or 'none'})"
                    )
                    lines.append(SkippedEntry(line_ref, booked, amount, reason))
                    continue
                if not amount.is_positive():
                    lines.append(SkippedEntry(line_ref, booked, amount, "zero amount"))
                    continue
                debtor = _text(tx, "RltdPties/Dbtr/Nm") or _text(tx, "RltdPties/Dbtr/Pty/Nm")
                lines.append(StatementEntry(line_ref, booked, amount, _camt_reference(tx), debtor))
    return StatementFile(statement_id, lines)


def _date_or_none(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- MT940 ----------------------------------------------------------------------------------
# Codes of the SWIFT-style ``:86:`` (``/CODE/value``) that end a remittance text.
_SWIFT_CODES = (
    "EREF|KREF|MARF|CSID|CNTP|REMI|PURP|ULTC|ULTD|ORDP|BENM|NAME|ADDR|IBAN|BIC|TRTP|RTRN|ISDT|"
    "SVWZ|ABWA|ABWE|CUR|ID"
)
_REMI = re.compile(
    rf"/REMI/(?:USTD//?|STRD/(?:CUR|ISO)/|STRD//?)?(?P<text>.*?)(?:/(?:{_SWIFT_CODES})/|/*$)",
    re.DOTALL,
)
_NAME = re.compile(r"/NAME/(?P<name>[^/]*)")
_CNTP_NAME = re.compile(r"/CNTP/[^/]*/[^/]*/(?P<name>[^/]*)")


def parse_mt940(document: bytes) -> StatementFile:
    """Every statement (``:20:`` block) of an MT940 file; INVALID_ARGUMENT (``mt940``) if none.

    Credits (``C``) are transfers in; debits (``D``) and reversals (``RC``, ``RD``) are
    listed as skipped. The line's reference is the bank's (``:61:`` after ``//``), else
    the account, statement number and position, so a file imported twice records once.
    """
    try:
        blocks = mt940.parse_statements(
            _decode_mt940(document),
            options=Options.all(),
            # The structured ``:86:`` sub-fields joined with spaces, so words stay apart.
            processors={
                "post_transaction_details": [
                    mt940_processors.transaction_details_post_processor_with_space
                ]
            },
        )
    except Exception as exc:  # noqa: BLE001 - the parser raises whatever a bad line gives
        # Its message quotes the file's lines: cut, and never with a card number in it.
        detail = redact_card_numbers(str(exc).splitlines()[0][:120] if str(exc) else "")
        raise InvalidArgument.field(
            "mt940", f"not an MT940 statement ({type(exc).__name__}: {detail})"
        ) from None
    blocks = [b for b in blocks if b.data.get("transaction_reference") or len(b)]
    if not blocks or not any(b.data.get("account_identification") for b in blocks):
        raise InvalidArgument.field("mt940", "no :20:/:25: statement: not an MT940 statement")
    first = blocks[0].data
    statement_id = str(first.get("transaction_reference") or new_id("stmt"))
    lines: list[StatementEntry | SkippedEntry] = []  # in statement order
    for s_index, block in enumerate(blocks):
        account = str(block.data.get("account_identification") or "")
        number = str(block.data.get("statement_number") or s_index)
        sequence = str(block.data.get("sequence_number") or "")
        for index, transaction in enumerate(block):
            data = transaction.data
            field = f"mt940[{s_index}].:61:[{index}]"
            bank_ref = str(data.get("bank_reference") or "").strip()
            numbered = f"{number}/{sequence}" if sequence else number
            line_ref = (
                bank_ref
                if bank_ref and bank_ref.upper() != "NONREF"
                else f"{account}:{numbered}:{index + 1}"
            )
            try:
                raw = data["amount"]
                amount = Money.of(abs(Decimal(raw.amount)), str(raw.currency or "").upper())
            except (KeyError, AttributeError, InvalidOperation, MoneyError):
                raise InvalidArgument.field(field, "invalid amount or currency") from None
            booked = data.get("entry_date") or data.get("date")
            if not isinstance(booked, date):
                raise InvalidArgument.field(field, "missing date")
            booked = date(booked.year, booked.month, booked.day)
            mark = str(data.get("status") or "").upper()
            if mark != "C":
                reason = {
                    "D": "debit: money going out",
                    "RC": "reversal of a credit: a returned transfer",
                    "RD": "reversal of a debit: not a payment",
                }.get(mark, f"debit/credit mark {mark!r}")
                lines.append(SkippedEntry(line_ref, booked, amount, reason))
                continue
            if not amount.is_positive():
                lines.append(SkippedEntry(line_ref, booked, amount, "zero amount"))
                continue
            reference, debtor = _mt940_reference(data)
            lines.append(StatementEntry(line_ref, booked, amount, reference, debtor))
    return StatementFile(statement_id, lines)


def _decode_mt940(document: bytes) -> str:
    """UTF-8 if it is, else the Latin-1 family German and Dutch banks write (Windows-1252)."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return document.decode(encoding)
        except UnicodeDecodeError:
            continue
    return document.decode("latin-1")  # every byte is a character: never fails


def _mt940_reference(data: dict[str, object]) -> tuple[str, str]:
    """(the RF reference or remittance text, the payer's name) from a transaction's details."""
    details = " ".join(str(data.get("transaction_details") or "").split())
    purpose = " ".join(str(data.get("purpose") or "").split())
    remittance = ""
    found = _REMI.search(details)
    if found:
        remittance = found.group("text").strip(" /")
    remittance = remittance or purpose
    candidates = [
        remittance,
        str(data.get("end_to_end_reference") or ""),
        str(data.get("customer_reference") or ""),
        details,
        purpose,
        str(data.get("extra_details") or ""),
    ]
    for text in candidates:
        rf = reference_in(text)
        if rf:
            break
    else:
        rf = ""
    name = ""
    for pattern in (_NAME, _CNTP_NAME):
        match = pattern.search(details)
        if match and match.group("name").strip():
            name = match.group("name").strip()
            break
    if not name:
        name = str(data.get("applicant_name") or "").strip()
    return rf or remittance or details, name
