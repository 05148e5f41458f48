"""SQL repositories of the payments service (lists keyset-paginated on the id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.payments.adapters.orm import (
    invoice_references,
    payment_allocations,
    payment_methods,
    payments,
    retry_policies,
    statement_lines,
)
from services.payments.domain.model import (
    AccountPaymentSettings,
    Attempt,
    Payment,
    PaymentMethod,
    PaymentState,
)


class SqlMethodRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, method: PaymentMethod) -> None:
        self._session.add(method)

    def get(self, method_id: str) -> PaymentMethod | None:
        return self._session.get(PaymentMethod, method_id)

    def of_account(self, account_id: str) -> Sequence[PaymentMethod]:
        query = (
            select(PaymentMethod)
            .where(payment_methods.c.account_id == account_id)
            .order_by(payment_methods.c.method_id)
        )
        return list(self._session.scalars(query))

    def by_payment_reference(self, reference: str) -> PaymentMethod | None:
        query = select(PaymentMethod).where(payment_methods.c.payment_reference == reference)
        return self._session.scalars(query).first()


class SqlSettingsRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, settings: AccountPaymentSettings) -> None:
        self._session.add(settings)

    def get(self, account_id: str) -> AccountPaymentSettings | None:
        return self._session.get(AccountPaymentSettings, account_id)

    def retry_days(self, group_id: str) -> str | None:
        row = self._session.execute(
            select(retry_policies.c.retry_days).where(retry_policies.c.group_id == group_id)
        ).first()
        return str(row.retry_days) if row else None

    def set_retry_days(self, group_id: str, days: str) -> None:
        existing = self.retry_days(group_id)
        if existing is None:
            self._session.execute(insert(retry_policies).values(group_id=group_id, retry_days=days))
        else:
            self._session.execute(
                retry_policies.update()
                .where(retry_policies.c.group_id == group_id)
                .values(retry_days=days)
            )

    def add_invoice_reference(self, reference: str, invoice_id: str, account_id: str) -> None:
        found = self.invoice_by_reference(reference)
        if found is None:
            self._session.execute(
                insert(invoice_references).values(
                    reference=reference, invoice_id=invoice_id, account_id=account_id
                )
            )

    def invoice_by_reference(self, reference: str) -> tuple[str, str] | None:
        row = self._session.execute(
            select(invoice_references.c.invoice_id, invoice_references.c.account_id).where(
                invoice_references.c.reference == reference
            )
        ).first()
        return (str(row.invoice_id), str(row.account_id)) if row else None


class SqlPaymentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, payment: Payment) -> None:
        self._session.add(payment)

    def get(self, payment_id: str) -> Payment | None:
        return self._session.get(Payment, payment_id)

    def by_attempt(self, attempt_id: str) -> Payment | None:
        attempt = self._session.get(Attempt, attempt_id)
        return self.get(attempt.payment_id) if attempt else None

    def history(
        self, *, account_id: str = "", customer_id: str = "", after: str = "", limit: int
    ) -> Sequence[Payment]:
        query = select(Payment).order_by(payments.c.payment_id).limit(limit)
        if account_id:
            query = query.where(payments.c.account_id == account_id)
        if customer_id:
            query = query.where(payments.c.customer_id == customer_id)
        if after:
            query = query.where(payments.c.payment_id > after)
        return list(self._session.scalars(query))

    def due_for_check(self, now: datetime, limit: int) -> Sequence[str]:
        query = (
            select(payments.c.payment_id)
            .where(payments.c.next_check_at <= now)
            .order_by(payments.c.next_check_at)
            .limit(limit)
        )
        return list(self._session.scalars(query))

    def due_for_retry(self, now: datetime, limit: int) -> Sequence[str]:
        query = (
            select(payments.c.payment_id)
            .where(
                payments.c.next_retry_at <= now,
                payments.c.state.in_([PaymentState.FAILED, PaymentState.PENDING]),
            )
            .order_by(payments.c.next_retry_at)
            .limit(limit)
        )
        return list(self._session.scalars(query))

    def with_effects_pending(self, limit: int) -> Sequence[str]:
        query = (
            select(payments.c.payment_id)
            .where(payments.c.effects_pending.is_(True))
            .order_by(payments.c.payment_id)
            .limit(limit)
        )
        return list(self._session.scalars(query))

    def effects_applied(self, payment_id: str) -> None:
        # Two statements instead of loading the payment with its attempts and allocations;
        # the version moves on, so a concurrent ORM change of the row is still detected.
        self._session.execute(
            update(payments)
            .where(payments.c.payment_id == payment_id)
            .values(effects_pending=False, version=payments.c.version + 1)
        )
        self._session.execute(
            update(payment_allocations)
            .where(payment_allocations.c.payment_id == payment_id)
            .values(applied=True)
        )

    def settled_between(self, start: datetime, end: datetime) -> Sequence[Payment]:
        query = (
            select(Payment)
            .where(payments.c.settled_at >= start, payments.c.settled_at < end)
            .order_by(payments.c.settled_at)
        )
        return list(self._session.scalars(query))

    def unresolved_between(self, start: datetime, end: datetime) -> Sequence[Payment]:
        query = select(Payment).where(
            payments.c.created_at >= start,
            payments.c.created_at < end,
            payments.c.state.in_([PaymentState.PENDING, PaymentState.UNKNOWN]),
        )
        return list(self._session.scalars(query))

    def by_provider_references(self, references: Sequence[str]) -> Sequence[Payment]:
        found: list[Payment] = []
        wanted = sorted(set(references))
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            query = select(Payment).where(payments.c.provider_reference.in_(chunk))
            found.extend(self._session.scalars(query))
        return found

    def children(self, payment_id: str) -> Sequence[Payment]:
        query = select(Payment).where(payments.c.parent_payment_id == payment_id)
        return list(self._session.scalars(query))


class SqlStatementRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def seen(self, entry_reference: str) -> bool:
        row = self._session.execute(
            select(statement_lines.c.line_id).where(
                statement_lines.c.entry_reference == entry_reference
            )
        ).first()
        return row is not None

    def add_line(self, line: dict[str, Any]) -> None:
        self._session.execute(insert(statement_lines).values(**line))

    def lines(self, statement_id: str) -> Sequence[dict[str, Any]]:
        rows = self._session.execute(
            select(statement_lines)
            .where(statement_lines.c.statement_id == statement_id)
            .order_by(statement_lines.c.line_id)
        )
        return [dict(row._mapping) for row in rows]
