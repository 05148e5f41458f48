"""What payments does when invoicing announces an invoice (``InvoiceIssued``).

The event is delivered at least once; everything here is idempotent: the
invoice's reference is kept once, and the collection's request id is the invoice
id (``Collector.collect_invoice``), so a redelivered event charges nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.common.money import Money, MoneyError
from services.payments.domain.model import AccountPaymentSettings, Payment
from services.payments.domain.references import creditor_reference
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.collection_run import CollectionRun, RunSummary
from services.payments.service_layer.commands import CollectInvoice
from services.payments.service_layer.ports import PaymentsUnitOfWork

CONSUMER = "payments.invoice-issued"


def invoice_reference(number: str, invoice_id: str) -> str:
    """The ISO 11649 reference customers quote for an invoice: from its number."""
    body = re.sub(r"[^A-Z0-9]", "", (number or invoice_id).upper())[-21:]
    return creditor_reference(body or "0")


@dataclass(frozen=True)
class IssuedInvoice:
    event_id: str
    invoice_id: str
    number: str
    account_id: str
    customer_id: str
    currency: str
    amount_due: Money
    due_date: date | None
    resend: bool
    group_id: str = ""

    @classmethod
    def from_payload(cls, event_id: str, payload: dict[str, Any]) -> IssuedInvoice | None:
        """The invoice facts of the event; None when the payload cannot be collected."""
        try:
            due = payload.get("amount_due") or {}
            amount = Money.of(str(due.get("amount", "")), str(due.get("currency", "")))
            due_text = str(payload.get("due_date") or "")
            return cls(
                event_id=event_id,
                invoice_id=str(payload["invoice_id"]),
                number=str(payload.get("number", "")),
                account_id=str(payload["account_id"]),
                customer_id=str(payload.get("customer_id", "")),
                currency=str(payload.get("currency") or amount.currency),
                amount_due=amount,
                due_date=date.fromisoformat(due_text) if due_text else None,
                resend=bool(payload.get("resend", False)),
                group_id=str(payload.get("group_id") or ""),
            )
        except (KeyError, MoneyError, ValueError, AttributeError):
            return None


def on_invoice_issued(collector: Collector, invoice: IssuedInvoice) -> Payment | None:
    """Keep the invoice's payment reference and collect it if the account says so."""
    # No inbox row: each step is idempotent by itself (the reference is kept once, the
    # collection's request id is the invoice), so a crash midway is finished on redelivery.
    with collector.uow_factory() as uow:
        _remember(uow, invoice, {})
        uow.commit()
    command = _collection_of(collector, invoice)
    return collector.collect_invoice(command) if command is not None else None


def on_invoices_issued(run: CollectionRun, invoices: Sequence[IssuedInvoice]) -> RunSummary:
    """The same for the invoices one read of the stream returned: one collection run."""
    with run.collector.uow_factory() as uow:
        known: dict[str, AccountPaymentSettings] = {}
        for invoice in invoices:
            _remember(uow, invoice, known)
        uow.commit()
    commands = [_collection_of(run.collector, invoice) for invoice in invoices]
    return run.collect(c for c in commands if c is not None)


def _remember(
    uow: PaymentsUnitOfWork, invoice: IssuedInvoice, known: dict[str, AccountPaymentSettings]
) -> None:
    settings = known.get(invoice.account_id) or uow.settings.get(invoice.account_id)
    if settings is None:
        # An account without a method on file: remembered, so transfers quoting the
        # invoice's reference and later methods find it; nothing to charge yet.
        settings = AccountPaymentSettings(
            invoice.account_id,
            invoice.customer_id,
            invoice.currency,
            group_id=invoice.group_id,
        )
        uow.settings.add(settings)
    elif not settings.group_id and invoice.group_id:
        # The customer's group (from accounts, via invoicing) picks the retry schedule.
        settings.group_id = invoice.group_id
    known[invoice.account_id] = settings  # added ones are not flushed yet: get misses them
    uow.settings.add_invoice_reference(
        invoice_reference(invoice.number, invoice.invoice_id),
        invoice.invoice_id,
        invoice.account_id,
    )


def _collection_of(collector: Collector, invoice: IssuedInvoice) -> CollectInvoice | None:
    if invoice.resend or not invoice.amount_due.is_positive():
        return None
    # What is due now, not when the event was written: a desk payment or account credit
    # may have settled it since (a consumer that lagged must not charge it again).
    current = collector.invoicing.get_invoice(invoice.invoice_id)
    amount = current.amount_due if current is not None else invoice.amount_due
    if amount.currency != invoice.currency or not amount.is_positive():
        return None
    return CollectInvoice(invoice.invoice_id, invoice.account_id, amount, invoice.due_date)
