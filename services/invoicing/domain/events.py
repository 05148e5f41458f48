"""Facts invoicing publishes on ``reckon:events:invoicing`` (see the README's table).

Every invoice event carries the common invoice facts (``_InvoiceFacts``), flat,
so consumers (payments, notifications, dunning) need not call back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from services.common.events import DomainEvent
from services.common.money import Money

from .model import CreditNote, Invoice


@dataclass(frozen=True)
class _InvoiceFacts(DomainEvent):
    aggregate_field = "invoice_id"

    invoice_id: str
    number: str
    series: str
    account_id: str
    customer_id: str
    reseller_id: str
    group_id: str
    currency: str
    status: str
    total: Money
    amount_paid: Money
    amount_due: Money
    disputed_amount: Money
    issue_date: date | None
    due_date: date | None
    language_code: str
    bill_run_id: str


def facts(invoice: Invoice) -> dict[str, Any]:
    zero = Money.zero(invoice.currency)
    return {
        "invoice_id": invoice.invoice_id,
        "number": invoice.number,
        "series": invoice.series,
        "account_id": invoice.account_id,
        "customer_id": invoice.customer_id,
        "reseller_id": invoice.reseller_id,
        "group_id": invoice.group_id,
        "currency": invoice.currency,
        "status": invoice.status.value,
        "total": invoice.gross,
        "amount_paid": invoice.amount_paid or zero,
        "amount_due": invoice.amount_due,
        "disputed_amount": invoice.disputed_amount or zero,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "language_code": invoice.language_code,
        "bill_run_id": invoice.bill_run_id,
    }


@dataclass(frozen=True)
class InvoiceFinalized(_InvoiceFacts):
    event_type = "InvoiceFinalized"
    total_net: Money
    total_tax: Money
    credit_applied: Money


@dataclass(frozen=True)
class InvoiceIssued(_InvoiceFacts):
    event_type = "InvoiceIssued"
    resend: bool


@dataclass(frozen=True)
class InvoicePaid(_InvoiceFacts):
    event_type = "InvoicePaid"
    payment_id: str


@dataclass(frozen=True)
class InvoicePartiallyPaid(_InvoiceFacts):
    event_type = "InvoicePartiallyPaid"
    payment_id: str
    amount: Money


@dataclass(frozen=True)
class InvoiceVoided(_InvoiceFacts):
    event_type = "InvoiceVoided"
    reason: str


@dataclass(frozen=True)
class InvoiceMarkedUncollectible(_InvoiceFacts):
    event_type = "InvoiceMarkedUncollectible"
    reason: str


@dataclass(frozen=True)
class InvoiceReopened(_InvoiceFacts):
    event_type = "InvoiceReopened"
    payment_id: str
    amount: Money
    kind: str


@dataclass(frozen=True)
class CreditNoteIssued(_InvoiceFacts):
    event_type = "CreditNoteIssued"
    credit_note_id: str
    credit_note_number: str
    credit_note_series: str
    credit_total: Money
    credited_to_account: Money
    reason: str


def credit_note_facts(note: CreditNote) -> dict[str, Any]:
    assert note.credited_to_account is not None
    return {
        "credit_note_id": note.credit_note_id,
        "credit_note_number": note.number,
        "credit_note_series": note.series,
        "credit_total": note.gross,
        "credited_to_account": note.credited_to_account,
        "reason": note.reason,
    }


@dataclass(frozen=True)
class DisputeOpened(_InvoiceFacts):
    event_type = "DisputeOpened"
    dispute_id: str
    dispute_amount: Money
    reason: str


@dataclass(frozen=True)
class DisputeResolved(_InvoiceFacts):
    event_type = "DisputeResolved"
    dispute_id: str
    dispute_amount: Money
    outcome: str
    credit_note_id: str


@dataclass(frozen=True)
class BillRunCompleted(DomainEvent):
    event_type = "BillRunCompleted"
    aggregate_field = "bill_run_id"

    bill_run_id: str
    state: str
    accounts_total: int
    invoices_drafted: int
    accounts_failed: int
