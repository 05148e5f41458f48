"""Ports to the services payments works with, and the unit of work it runs in.

Invoicing (open invoices, recording allocations, account credit, reopening an
invoice) and charging (prepaid top-ups) are reached through these protocols:
``adapters/invoicing_client.py`` and ``adapters/charging_client.py`` speak gRPC,
unit tests use in-memory fakes. Every mutating call carries a request id derived
from the payment id, so a retried effect is applied once on the other side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

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


@dataclass(frozen=True)
class PaymentToAllocate:
    """One succeeded payment's allocations, for invoicing's batch call."""

    request_id: str
    payment_id: str
    allocations: tuple[tuple[str, Money], ...]


@runtime_checkable
class BatchAllocationPort(Protocol):
    """Invoicing that records many payments' allocations in one call (``RecordPayments``)."""

    def record_payments(self, payments: Sequence[PaymentToAllocate]) -> list[Exception | None]:
        """One entry per payment, in order: None when all of it was recorded, else why not."""
        ...


def record_payments(
    invoicing: InvoicingPort, payments: Sequence[PaymentToAllocate]
) -> list[Exception | None]:
    """Invoicing's batch call when it has one, else ``record_payment`` once per payment.

    A failure of one payment's allocation is that payment's entry, not the batch's: its
    effects stay pending for the effects runner, the others are done.
    """
    if isinstance(invoicing, BatchAllocationPort):
        return invoicing.record_payments(payments)
    outcomes: list[Exception | None] = []
    for payment in payments:
        try:
            invoicing.record_payment(
                request_id=payment.request_id,
                payment_id=payment.payment_id,
                allocations=payment.allocations,
            )
        except Exception as exc:  # noqa: BLE001 - any peer failure: retried by the runner
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


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


class CollectionRowsRepository(Protocol):
    """Set-based reads and writes of a collection run: one statement per step and batch."""

    def remembered(self, scope: str, request_ids: Sequence[str]) -> dict[str, str]:
        """Request id -> resource id of those already taken in ``scope``."""
        ...

    def chargeable(
        self, account_ids: Iterable[str]
    ) -> dict[str, tuple[AccountPaymentSettings, PaymentMethod]]:
        """Each account's settings with its default method (accounts without one left out)."""
        ...

    def retry_days_of(self, group_ids: Iterable[str]) -> dict[str, str]: ...

    def add_started(
        self, payments: Sequence[Payment], requests: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """Insert new payments with their attempts and allocations, and the request ids
        (scope, request id, fingerprint, payment id) that make them idempotent."""
        ...

    def save_answers(self, payments: Sequence[Payment]) -> None:
        """Write what the provider's answers changed on each payment and its last attempt;
        ABORTED if another writer changed one of them since (the version moved on)."""
        ...

    def effects_applied(self, payment_ids: Sequence[str]) -> None: ...


class StatementRepository(Protocol):
    def seen(self, entry_reference: str) -> bool: ...

    def add_line(self, line: dict[str, object]) -> None: ...

    def lines(self, statement_id: str) -> Sequence[dict[str, object]]: ...


class PaymentsUnitOfWork(UnitOfWork):
    methods: MethodRepository
    settings: SettingsRepository
    payments: PaymentRepository
    statements: StatementRepository
    collections: CollectionRowsRepository
