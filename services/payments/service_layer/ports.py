"""Ports to the services payments works with, and the unit of work it runs in.

Invoicing (open invoices, recording allocations, account credit, reopening an
invoice) and charging (prepaid top-ups) are reached through these protocols:
``adapters/invoicing_client.py`` and ``adapters/charging_client.py`` speak gRPC,
unit tests use in-memory fakes. Every mutating call carries a request id derived
from the payment id, so a retried effect is applied once on the other side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from services.common.money import Money
from services.common.unit_of_work import UnitOfWork
from services.payments.domain.model import AccountPaymentSettings, Payment, PaymentMethod


@dataclass(frozen=True)
class OpenInvoice:
    invoice_id: str
    account_id: str
    number: str
    issued_at: datetime
    due_date: date | None
    amount_due: Money
    payment_reference: str = ""


class InvoicingPort(Protocol):
    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        """The invoice with what is still due on it; None if there is no such invoice."""
        ...

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        """Invoices of the account with something still due, oldest first."""
        ...

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None: ...

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None: ...

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        """Take back an allocation; ``kind`` is REFUND or CHARGEBACK."""
        ...


class ChargingPort(Protocol):
    def top_up(self, *, request_id: str, account_id: str, amount: Money) -> None: ...


class MethodRepository(Protocol):
    def add(self, method: PaymentMethod) -> None: ...

    def get(self, method_id: str) -> PaymentMethod | None: ...

    def of_account(self, account_id: str) -> Sequence[PaymentMethod]: ...

    def by_payment_reference(self, reference: str) -> PaymentMethod | None: ...


class SettingsRepository(Protocol):
    def add(self, settings: AccountPaymentSettings) -> None: ...

    def get(self, account_id: str) -> AccountPaymentSettings | None: ...

    def retry_days(self, group_id: str) -> str | None: ...

    def set_retry_days(self, group_id: str, days: str) -> None: ...

    def add_invoice_reference(self, reference: str, invoice_id: str, account_id: str) -> None: ...

    def invoice_by_reference(self, reference: str) -> tuple[str, str] | None:
        """(invoice id, account id) of the invoice with this RF reference."""
        ...


class PaymentRepository(Protocol):
    def add(self, payment: Payment) -> None: ...

    def get(self, payment_id: str) -> Payment | None: ...

    def by_attempt(self, attempt_id: str) -> Payment | None: ...

    def history(
        self, *, account_id: str = "", customer_id: str = "", after: str = "", limit: int
    ) -> Sequence[Payment]: ...

    def due_for_check(self, now: datetime, limit: int) -> Sequence[str]: ...

    def due_for_retry(self, now: datetime, limit: int) -> Sequence[str]: ...

    def with_effects_pending(self, limit: int) -> Sequence[str]: ...

    def effects_applied(self, payment_id: str) -> None:
        """Mark the payment's allocations and top-up done (without loading it)."""
        ...

    def settled_between(self, start: datetime, end: datetime) -> Sequence[Payment]: ...

    def unresolved_between(self, start: datetime, end: datetime) -> Sequence[Payment]: ...

    def by_provider_references(self, references: Sequence[str]) -> Sequence[Payment]:
        """Payments (purchases and refunds) the provider knows by these references."""
        ...

    def children(self, payment_id: str) -> Sequence[Payment]: ...


class StatementRepository(Protocol):
    def seen(self, entry_reference: str) -> bool: ...

    def add_line(self, line: dict[str, object]) -> None: ...

    def lines(self, statement_id: str) -> Sequence[dict[str, object]]: ...


class PaymentsUnitOfWork(UnitOfWork):
    methods: MethodRepository
    settings: SettingsRepository
    payments: PaymentRepository
    statements: StatementRepository
