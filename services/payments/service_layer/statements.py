"""Bank statements (camt.053, MT940) and the daily reconciliation report (PAY-6).

Each credit entry of a statement is matched by the payment reference the payer
quoted: an invoice's ISO 11649 reference (kept when the invoice was issued) or
an account's bank-transfer reference (on its method on file). A match becomes
a BANK_TRANSFER payment allocated like any manual payment (the request id is
the bank's entry reference, so importing a statement twice records nothing new);
everything else is listed UNMATCHED with the reason. Lines that are not payments
to us (debits, reversals, pending entries) are listed IGNORED and not recorded.
Both formats are parsed into the same lines by ``statement_files``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from services.common.clock import Clock
from services.common.errors import ReckonError
from services.common.ids import new_id
from services.payments.domain.model import Channel
from services.payments.domain.provider import PaymentProvider
from services.payments.domain.references import (
    creditor_reference,
    is_creditor_reference,
    normalise_reference,
)
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.commands import CreatePayment
from services.payments.service_layer.ports import InvoicingPort, PaymentsUnitOfWork
from services.payments.service_layer.reconciliation import (
    ChannelTotals,
    ReconciliationReport,
    reconcile,
)
from services.payments.service_layer.statement_files import (
    SkippedEntry,
    StatementEntry,
    StatementFile,
    looks_like_mt940,
    parse_camt053,
    parse_mt940,
)


@dataclass(frozen=True)
class LineOutcome:
    entry: StatementEntry | SkippedEntry
    outcome: str  # MATCHED | PARTIAL | UNMATCHED | DUPLICATE | IGNORED
    reason: str
    payment_id: str = ""


@dataclass
class Statements:
    uow_factory: Callable[[], PaymentsUnitOfWork]
    collector: Collector
    invoicing: InvoicingPort
    clock: Clock
    # Asked for its balance movements and payouts by the reconciliation report.
    provider: PaymentProvider | None = None

    def import_camt053(self, document: bytes) -> tuple[str, list[LineOutcome]]:
        return self._import(parse_camt053(document))

    def import_mt940(self, document: bytes) -> tuple[str, list[LineOutcome]]:
        return self._import(parse_mt940(document))

    def import_document(self, document: bytes) -> tuple[str, list[LineOutcome]]:
        """A statement in either format, told apart by its first bytes."""
        if looks_like_mt940(document):
            return self.import_mt940(document)
        return self.import_camt053(document)

    def _import(self, statement: StatementFile) -> tuple[str, list[LineOutcome]]:
        """Every incoming transfer matched and recorded (each in its own transaction, so a
        crash part way through resumes on the next import), then the skipped lines."""
        outcomes = [
            self._import_line(statement.statement_id, line)
            if isinstance(line, StatementEntry)
            else LineOutcome(line, "IGNORED", line.reason)
            for line in statement.lines
        ]
        return statement.statement_id, outcomes

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
        if entry.problem:
            return LineOutcome(entry, "UNMATCHED", entry.problem)
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
        return self.report(day).totals

    def report(self, day: date) -> ReconciliationReport:
        """The day per channel: what was recorded, and what the provider settled and paid out."""
        return reconcile(self.uow_factory, self.provider, self.clock, day)
