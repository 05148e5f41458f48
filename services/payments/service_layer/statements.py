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
from services.payments.domain.references import is_creditor_reference, normalise_reference
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


def parse_camt053(document: bytes) -> tuple[str, list[StatementEntry]]:
    """The statement id and its credit entries; INVALID_ARGUMENT if it is not camt.053."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidArgument.field("camt053", f"not well-formed XML: {exc}") from None
    statement = _find(root, "BkToCstmrStmt/Stmt")
    if statement is None:
        raise InvalidArgument.field("camt053", "no BkToCstmrStmt/Stmt: not a camt.053 statement")
    statement_id = _text(statement, "Id") or new_id("stmt")
    entries: list[StatementEntry] = []
    for index, entry in enumerate(c for c in statement if _local(c) == "Ntry"):
        if _text(entry, "CdtDbtInd") != "CRDT":
            continue  # only money coming in pays invoices
        amount_el = _find(entry, "Amt")
        try:
            amount = Money.of(
                Decimal((amount_el.text or "").strip()) if amount_el is not None else "x",
                (amount_el.get("Ccy") or "") if amount_el is not None else "",
            )
        except (InvalidOperation, MoneyError):
            raise InvalidArgument.field(
                f"camt053.Ntry[{index}].Amt", "missing or invalid amount or currency"
            ) from None
        booked_text = _text(entry, "BookgDt/Dt") or _text(entry, "BookgDt/DtTm")[:10]
        try:
            booked = date.fromisoformat(booked_text)
        except ValueError:
            raise InvalidArgument.field(f"camt053.Ntry[{index}].BookgDt", "missing date") from None
        details = _find(entry, "NtryDtls/TxDtls")
        scope = details if details is not None else entry
        reference = _text(scope, "RmtInf/Strd/CdtrRefInf/Ref")
        if not reference:
            unstructured = _text(scope, "RmtInf/Ustrd")
            reference = _reference_in(unstructured) or unstructured
        debtor = _text(scope, "RltdPties/Dbtr/Nm") or _text(scope, "RltdPties/Dbtr/Pty/Nm")
        entry_ref = (
            _text(entry, "AcctSvcrRef")
            or _text(entry, "NtryRef")
            or _text(scope, "Refs/AcctSvcrRef")
            or f"{statement_id}:{index}"
        )
        entries.append(StatementEntry(entry_ref, booked, amount, reference.strip(), debtor))
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
