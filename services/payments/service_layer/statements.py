"""Bank statements (camt.053) and the daily reconciliation report (PAY-6).

Each credit entry of a statement is matched by the payment reference the payer
quoted: an invoice's ISO 11649 reference (kept when the invoice was issued) or
an account's bank-transfer reference (on its method on file). A match becomes
a BANK_TRANSFER payment allocated like any manual payment (the request id is
the bank's entry reference, so importing a statement twice records nothing new);
everything else is listed UNMATCHED with the reason. Parsing is lxml on the
document's own namespace, so camt.053.001.02 to .08 read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from lxml import etree

from services.common.clock import Clock
from services.common.errors import InvalidArgument, ReckonError
from services.common.ids import new_id
from services.common.money import Money, MoneyError
from services.payments.domain.model import Channel, Payment, PaymentState, TransactionKind
from services.payments.domain.references import (
    creditor_reference,
    is_creditor_reference,
    normalise_reference,
)
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.commands import CreatePayment
from services.payments.service_layer.ports import InvoicingPort, PaymentsUnitOfWork

_RF_IN_TEXT = re.compile(r"RF\d{2}(?: ?[A-Z0-9]){1,21}")


def _reference_in(text: str) -> str:
    """An RF reference quoted inside free text (the longest prefix whose check digits hold)."""
    for found in _RF_IN_TEXT.finditer(text.upper()):
        compact = found.group(0).replace(" ", "")
        for end in range(len(compact), 4, -1):
            if is_creditor_reference(compact[:end]):
                return compact[:end]
    return ""


@dataclass(frozen=True)
class StatementEntry:
    entry_reference: str
    booked_on: date
    amount: Money
    reference: str
    debtor_name: str


@dataclass(frozen=True)
class LineOutcome:
    entry: StatementEntry
    outcome: str  # MATCHED | PARTIAL | UNMATCHED | DUPLICATE
    reason: str
    payment_id: str = ""


@dataclass(frozen=True)
class ChannelTotals:
    channel: Channel
    currency: str
    payments: int
    collected: Money
    reversals: int
    reversed: Money
    unresolved: int

    @property
    def net(self) -> Money:
        return self.collected - self.reversed


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


def parse_camt053(document: bytes) -> tuple[str, list[StatementEntry]]:
    """The statement id and its credit transfers; INVALID_ARGUMENT if it is not camt.053.

    Every ``Stmt`` of the document is read. An entry that is not booked (``Sts`` PDNG or
    INFO) or is a reversal (``RvslInd``) is skipped; a batch entry with several
    ``TxDtls`` gives one line per transaction, with the transaction's own amount.
    """
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidArgument.field("camt053", f"not well-formed XML: {exc}") from None
    container = _find(root, "BkToCstmrStmt")
    statements = _children(container, "Stmt") if container is not None else []
    if not statements:
        raise InvalidArgument.field("camt053", "no BkToCstmrStmt/Stmt: not a camt.053 statement")
    statement_id = _text(statements[0], "Id") or new_id("stmt")
    entries: list[StatementEntry] = []
    for s_index, statement in enumerate(statements):
        for index, entry in enumerate(_children(statement, "Ntry")):
            field = f"camt053.Stmt[{s_index}].Ntry[{index}]"
            status = (_text(entry, "Sts/Cd") or _text(entry, "Sts")).upper()
            if status in ("PDNG", "INFO") or _text(entry, "RvslInd").lower() == "true":
                continue
            booked_text = _text(entry, "BookgDt/Dt") or _text(entry, "BookgDt/DtTm")[:10]
            try:
                booked = date.fromisoformat(booked_text)
            except ValueError:
                raise InvalidArgument.field(f"{field}.BookgDt", "missing date") from None
            entry_amount = _money_at(entry, ("Amt",), f"{field}.Amt")
            entry_side = _text(entry, "CdtDbtInd")
            entry_ref = (
                _text(entry, "AcctSvcrRef")
                or _text(entry, "NtryRef")
                or f"{statement_id}:{s_index}:{index}"
            )
            details = [
                tx for block in _children(entry, "NtryDtls") for tx in _children(block, "TxDtls")
            ]
            for t_index, tx in enumerate(details or [entry]):
                side = _text(tx, "CdtDbtInd") if tx is not entry else ""
                if (side or entry_side) != "CRDT":
                    continue  # only money coming in pays invoices
                amount = (
                    _money_at(tx, ("AmtDtls/TxAmt/Amt", "Amt"), f"{field}.TxDtls[{t_index}]")
                    if tx is not entry
                    else None
                )
                if amount is None and len(details) <= 1:
                    amount = entry_amount
                if amount is None:
                    raise InvalidArgument.field(f"{field}.Amt", "missing amount")
                reference = _text(tx, "RmtInf/Strd/CdtrRefInf/Ref")
                if not reference:
                    unstructured = " ".join(
                        (u.text or "").strip()
                        for block in _children(tx, "RmtInf")
                        for u in _children(block, "Ustrd")
                    )
                    reference = _reference_in(unstructured) or unstructured
                debtor = _text(tx, "RltdPties/Dbtr/Nm") or _text(tx, "RltdPties/Dbtr/Pty/Nm")
                line_ref = entry_ref if len(details) <= 1 else f"{entry_ref}/{t_index + 1}"
                entries.append(StatementEntry(line_ref, booked, amount, reference.strip(), debtor))
    return statement_id, entries


@dataclass
class Statements:
    uow_factory: Callable[[], PaymentsUnitOfWork]
    collector: Collector
    invoicing: InvoicingPort
    clock: Clock

    def import_camt053(self, document: bytes) -> tuple[str, list[LineOutcome]]:
        statement_id, entries = parse_camt053(document)
        outcomes = [self._import_line(statement_id, entry) for entry in entries]
        return statement_id, outcomes

    def _import_line(self, statement_id: str, entry: StatementEntry) -> LineOutcome:
        with self.uow_factory() as uow:
            if uow.statements.seen(entry.entry_reference):
                return LineOutcome(entry, "DUPLICATE", "already imported")
        outcome = self._match(entry)
        with self.uow_factory() as uow:
            uow.statements.add_line(
                {
                    "line_id": new_id("stl"),
                    "statement_id": statement_id,
                    "entry_reference": entry.entry_reference,
                    "booked_on": entry.booked_on,
                    "amount": entry.amount.amount,
                    "currency": entry.amount.currency,
                    "reference": entry.reference[:140],
                    "debtor_name": entry.debtor_name[:140],
                    "outcome": outcome.outcome,
                    "reason": outcome.reason[:200],
                    "payment_id": outcome.payment_id,
                    "imported_at": self.clock.now(),
                }
            )
            uow.commit()
        return outcome

    def _match(self, entry: StatementEntry) -> LineOutcome:
        reference = normalise_reference(entry.reference)
        if not reference:
            return LineOutcome(entry, "UNMATCHED", "no payment reference")
        if not is_creditor_reference(reference):
            # Free text: an invoice number quoted instead of its RF reference.
            reference = self._reference_of_number(entry.reference) or reference
        if not is_creditor_reference(reference):
            return LineOutcome(entry, "UNMATCHED", f"{reference[:40]} is not an RF reference")
        with self.uow_factory() as uow:
            invoice_ref = uow.settings.invoice_by_reference(reference)
            method = uow.methods.by_payment_reference(reference)
        invoice_ids: tuple[str, ...] = ()
        if invoice_ref is not None:
            invoice_id, account_id = invoice_ref
            invoice = self.invoicing.get_invoice(invoice_id)
            if invoice is None:
                return LineOutcome(entry, "UNMATCHED", f"invoice {invoice_id} not found")
            if invoice.amount_due.currency != entry.amount.currency:
                return LineOutcome(entry, "UNMATCHED", "currency differs from the invoice's")
            if not invoice.amount_due.is_positive():
                return LineOutcome(entry, "UNMATCHED", f"invoice {invoice.number} is already paid")
            invoice_ids = (invoice_id,)
            if entry.amount == invoice.amount_due:
                outcome, reason = "MATCHED", f"paid invoice {invoice.number}"
            elif entry.amount < invoice.amount_due:
                left = invoice.amount_due - entry.amount
                outcome, reason = "PARTIAL", f"invoice {invoice.number}: {left} still due"
            else:
                extra = entry.amount - invoice.amount_due
                outcome, reason = "MATCHED", f"paid invoice {invoice.number}; {extra} to credit"
        elif method is not None:
            account_id = method.account_id
            outcome, reason = "MATCHED", "allocated to the account's open invoices, oldest first"
        else:
            return LineOutcome(entry, "UNMATCHED", f"unknown reference {reference}")
        try:
            payment = self.collector.create_payment(
                CreatePayment(
                    account_id=account_id,
                    amount=entry.amount,
                    channel=Channel.BANK_TRANSFER,
                    request_id=f"statement:{entry.entry_reference}",
                    invoice_ids=invoice_ids,
                    external_reference=entry.entry_reference,
                )
            )
        except ReckonError as exc:
            return LineOutcome(entry, "UNMATCHED", exc.message)
        return LineOutcome(entry, outcome, reason, payment.payment_id)

    def _reference_of_number(self, text: str) -> str:
        """The RF reference of an invoice whose number appears in ``text``, if any."""
        for token in re.findall(r"[A-Za-z0-9][A-Za-z0-9/_.-]{3,}", text.upper()):
            body = re.sub(r"[^A-Z0-9]", "", token)[-21:]
            if not body:
                continue
            candidate = creditor_reference(body)
            with self.uow_factory() as uow:
                if uow.settings.invoice_by_reference(candidate) is not None:
                    return candidate
        return ""

    # -- reconciliation -----------------------------------------------------------------------
    def reconciliation(self, day: date) -> list[ChannelTotals]:
        start = datetime.combine(day, time(0), tzinfo=self.clock.now().tzinfo)
        end = start + timedelta(days=1)
        with self.uow_factory() as uow:
            settled = [
                p
                for p in uow.payments.settled_between(start, end)
                if p.state is PaymentState.SUCCEEDED
            ]
            unresolved = uow.payments.unresolved_between(start, end)
        return summarise(settled, unresolved)


@dataclass
class _Row:
    payments: int
    collected: Money
    reversals: int
    reversed: Money
    unresolved: int = 0


def summarise(settled: Sequence[Payment], unresolved: Sequence[Payment]) -> list[ChannelTotals]:
    """Per channel and currency: what was collected and reversed, and what is still open."""
    rows: dict[tuple[Channel, str], _Row] = {}

    def row_of(payment: Payment) -> _Row:
        currency = payment.amount.currency
        zero = Money.zero(currency)
        return rows.setdefault((payment.channel, currency), _Row(0, zero, 0, zero))

    for payment in settled:
        row = row_of(payment)
        if payment.kind is TransactionKind.PURCHASE:
            row.payments += 1
            row.collected = row.collected + payment.amount
        else:
            row.reversals += 1
            row.reversed = row.reversed + payment.amount
    for payment in unresolved:
        row_of(payment).unresolved += 1
    return [
        ChannelTotals(
            channel, currency, r.payments, r.collected, r.reversals, r.reversed, r.unresolved
        )
        for (channel, currency), r in sorted(rows.items())
    ]
