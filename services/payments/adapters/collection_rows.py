"""Set-based SQL of a collection run: one statement per step for a whole batch.

The collection run (``service_layer.collection_run``) builds and changes ``Payment``
objects with the domain's own methods and writes them here with Core statements
(a multi-row INSERT, an executemany UPDATE) instead of the ORM's per-object flush.
The ``version`` column moves exactly as the ORM's ``version_id_col`` moves it, so the
janitor, callbacks and the one-invoice path, which load payments through the ORM, see
the same rows and detect the same conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.clock import Clock
from services.common.errors import Aborted
from services.payments.adapters.orm import (
    account_settings,
    payment_allocations,
    payment_attempts,
    payment_methods,
    payments,
    retry_policies,
)
from services.payments.domain.model import AccountPaymentSettings, Payment, PaymentMethod

# Columns the provider's answer can change (``Payment.apply_result`` and friends).
_ANSWER_COLUMNS = (
    "state",
    "provider_reference",
    "decline_code",
    "hard_decline",
    "settled_at",
    "failures",
    "first_failed_at",
    "next_retry_at",
    "next_check_at",
    "checks_done",
    "credit_amount",
    "effects_pending",
)
_ATTEMPT_ANSWER_COLUMNS = ("state", "decline_code", "provider_reference", "resolved_at")


def _payment_row(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "kind": payment.kind,
        "purpose": payment.purpose,
        "account_id": payment.account_id,
        "customer_id": payment.customer_id,
        "channel": payment.channel,
        "amount": payment.amount.amount,
        "currency": payment.amount.currency,
        "created_at": payment.created_at,
        "method_id": payment.method_id,
        "provider": payment.provider,
        "parent_payment_id": payment.parent_payment_id,
        "state": payment.state,
        "provider_reference": payment.provider_reference,
        "decline_code": payment.decline_code,
        "hard_decline": payment.hard_decline,
        "settled_at": payment.settled_at,
        "invoice_ids": payment.invoice_ids,
        "retry_days": payment.retry_days,
        "failures": payment.failures,
        "first_failed_at": payment.first_failed_at,
        "next_retry_at": payment.next_retry_at,
        "next_check_at": payment.next_check_at,
        "checks_done": payment.checks_done,
        "refunded_amount": payment.refunded_amount,
        "credit_amount": payment.credit_amount,
        "effects_pending": payment.effects_pending,
        "version": 1,  # what the ORM's version_id_col writes on insert
    }


class SqlCollectionRows:
    def __init__(self, session: Session, idempotency_keys: Table, clock: Clock) -> None:
        self._session = session
        self._idempotency = idempotency_keys
        self._clock = clock

    def remembered(self, scope: str, request_ids: Sequence[str]) -> dict[str, str]:
        if not request_ids:
            return {}
        table = self._idempotency
        rows = self._session.execute(
            select(table.c.request_id, table.c.resource_id).where(
                table.c.scope == scope, table.c.request_id.in_(list(request_ids))
            )
        )
        return {str(row.request_id): str(row.resource_id) for row in rows}

    def chargeable(
        self, account_ids: Iterable[str]
    ) -> dict[str, tuple[AccountPaymentSettings, PaymentMethod]]:
        wanted = sorted(set(account_ids))
        if not wanted:
            return {}
        # Loaded through the ORM: it fills the instances' state directly, cheaper than
        # building them attribute by attribute through the instrumented constructors.
        rows = self._session.execute(
            select(AccountPaymentSettings, PaymentMethod)
            .join(
                PaymentMethod,
                payment_methods.c.method_id == account_settings.c.default_method_id,
            )
            .where(account_settings.c.account_id.in_(wanted))
        )
        return {settings.account_id: (settings, method) for settings, method in rows.tuples()}

    def retry_days_of(self, group_ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted({g for g in group_ids if g})
        if not wanted:
            return {}
        rows = self._session.execute(
            select(retry_policies.c.group_id, retry_policies.c.retry_days).where(
                retry_policies.c.group_id.in_(wanted)
            )
        )
        return {str(row.group_id): str(row.retry_days) for row in rows}

    def add_started(
        self, payments_: Sequence[Payment], requests: Sequence[tuple[str, str, str, str]]
    ) -> None:
        if not payments_:
            return
        now = self._clock.now()
        session = self._session
        # The request ids first: a key a concurrent run took fails the batch before
        # anything else is written (the caller falls back to one invoice at a time).
        try:
            session.execute(
                self._idempotency.insert(),
                [
                    {
                        "scope": scope,
                        "request_id": request_id,
                        "fingerprint": fingerprint,
                        "resource_id": resource_id,
                        "created_at": now,
                    }
                    for scope, request_id, fingerprint, resource_id in requests
                ],
            )
        except IntegrityError as exc:
            raise Aborted("a concurrent run took some of these request ids; retry") from exc
        session.execute(payments.insert(), [_payment_row(p) for p in payments_])
        attempts = [
            {
                "attempt_id": a.attempt_id,
                "payment_id": a.payment_id,
                "number": a.number,
                "sent_at": a.sent_at,
                "state": a.state,
                "decline_code": a.decline_code,
                "provider_reference": a.provider_reference,
                "resolved_at": a.resolved_at,
            }
            for p in payments_
            for a in p.attempts
        ]
        if attempts:
            session.execute(payment_attempts.insert(), attempts)
        allocations = [
            {
                "payment_id": a.payment_id,
                "invoice_id": a.invoice_id,
                "amount": a.amount.amount,
                "currency": a.amount.currency,
                "applied": a.applied,
            }
            for p in payments_
            for a in p.allocations
        ]
        if allocations:
            session.execute(payment_allocations.insert(), allocations)
        for payment in payments_:
            payment.version = 1

    def save_answers(self, payments_: Sequence[Payment]) -> None:
        if not payments_:
            return
        statement = (
            update(payments)
            .where(
                payments.c.payment_id == bindparam("b_payment_id"),
                payments.c.version == bindparam("b_version"),
            )
            .values(
                {
                    **{name: bindparam(f"b_{name}") for name in _ANSWER_COLUMNS},
                    "version": payments.c.version + 1,
                }
            )
        )
        rows = []
        for payment in payments_:
            row = {f"b_{name}": getattr(payment, name) for name in _ANSWER_COLUMNS}
            row["b_payment_id"] = payment.payment_id
            row["b_version"] = payment.version
            rows.append(row)
        result = self._session.execute(statement, rows)
        changed = int(getattr(result, "rowcount", -1))
        if changed != len(payments_):
            # The janitor or a callback resolved one of them meanwhile: theirs stands;
            # this batch's answers are rolled back and the janitor asks again.
            raise Aborted(f"{len(payments_) - changed} payments of the batch changed concurrently")
        attempt_statement = (
            update(payment_attempts)
            .where(payment_attempts.c.attempt_id == bindparam("b_attempt_id"))
            .values({name: bindparam(f"b_{name}") for name in _ATTEMPT_ANSWER_COLUMNS})
        )
        attempt_rows = []
        for payment in payments_:
            attempt = payment.last_attempt
            if attempt is None:
                continue
            row = {f"b_{name}": getattr(attempt, name) for name in _ATTEMPT_ANSWER_COLUMNS}
            row["b_attempt_id"] = attempt.attempt_id
            attempt_rows.append(row)
        if attempt_rows:
            self._session.execute(attempt_statement, attempt_rows)
        for payment in payments_:
            payment.version += 1

    def effects_applied(self, payment_ids: Sequence[str]) -> None:
        if not payment_ids:
            return
        ids = list(payment_ids)
        self._session.execute(
            update(payments)
            .where(payments.c.payment_id.in_(ids))
            .values(effects_pending=False, version=payments.c.version + 1)
        )
        self._session.execute(
            update(payment_allocations)
            .where(payment_allocations.c.payment_id.in_(ids))
            .values(applied=True)
        )
