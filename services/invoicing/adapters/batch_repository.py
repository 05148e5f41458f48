"""Set-at-a-time reads and writes for a bill run's work message (many accounts, one transaction).

Each statement covers every account of the message, so a message of 50 accounts
costs about twenty round trips to the database instead of twenty per account
(ADR 0022). Updates of many rows are ``executemany`` (pipelined by psycopg 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from services.common.errors import Aborted
from services.common.money import Money
from services.invoicing.adapters.invoice_repository import _invoice_values, _line_values
from services.invoicing.adapters.orm import (
    account_credit,
    accounts,
    bill_run_items,
    customers,
    invoice_history,
    invoice_lines,
    invoices,
    number_series,
    pending_items,
    rated_usage,
    segments,
)
from services.invoicing.adapters.repositories import _account, _pending, _segment
from services.invoicing.domain.builder import RatedUsage, Segment
from services.invoicing.domain.model import Invoice, PendingItem
from services.invoicing.domain.parties import AccountFacts, ItemStatus

_CHUNK = 1000


class SqlBatch:
    def __init__(self, session: Session) -> None:
        self._s = session

    def item_statuses(self, bill_run_id: str, account_ids: Sequence[str]) -> dict[str, ItemStatus]:
        rows = self._s.execute(
            select(bill_run_items.c.account_id, bill_run_items.c.status).where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id.in_(account_ids),
            )
        )
        return {account_id: ItemStatus(status) for account_id, status in rows}

    def accounts(self, account_ids: Sequence[str]) -> dict[str, AccountFacts]:
        query = (
            select(accounts, customers.c.language_code)
            .join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
            .where(accounts.c.account_id.in_(account_ids))
        )
        return {row.account_id: _account(row) for row in self._s.execute(query)}

    def children(self, account_ids: Sequence[str]) -> dict[str, list[AccountFacts]]:
        query = (
            select(accounts, customers.c.language_code)
            .join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
            .where(accounts.c.parent_account_id.in_(account_ids))
            .order_by(accounts.c.account_id)
        )
        found: dict[str, list[AccountFacts]] = {}
        for row in self._s.execute(query):
            found.setdefault(row.parent_account_id, []).append(_account(row))
        return found

    def existing(
        self, account_ids: Sequence[str], cycle_keys: set[str]
    ) -> dict[tuple[str, str], str]:
        rows = self._s.execute(
            select(invoices.c.account_id, invoices.c.cycle_key, invoices.c.invoice_id).where(
                invoices.c.account_id.in_(account_ids), invoices.c.cycle_key.in_(cycle_keys)
            )
        )
        return {(a, k): i for a, k, i in rows}

    def segments(self, account_ids: Sequence[str]) -> dict[str, list[Segment]]:
        found: dict[str, list[Segment]] = {}
        query = (
            select(segments)
            .where(segments.c.account_id.in_(account_ids))
            .order_by(segments.c.segment_id)
        )
        for row in self._s.execute(query):
            found.setdefault(row.account_id, []).append(_segment(row))
        return found

    def unbilled(self, account_ids: Sequence[str], before: datetime) -> dict[str, list[RatedUsage]]:
        found: dict[str, list[RatedUsage]] = {}
        query = (
            select(rated_usage)
            .where(
                rated_usage.c.account_id.in_(account_ids),
                rated_usage.c.invoice_id.is_(None),
                rated_usage.c.event_time < before,
            )
            .order_by(rated_usage.c.event_time, rated_usage.c.record_id)
        )
        for r in self._s.execute(query):
            found.setdefault(r.account_id, []).append(
                RatedUsage(
                    r.record_id,
                    r.account_id,
                    r.service,
                    r.destination,
                    r.quantity,
                    r.unit,
                    r.net,
                    r.event_time,
                )
            )
        return found

    def pending(self, account_ids: Sequence[str]) -> dict[str, list[PendingItem]]:
        found: dict[str, list[PendingItem]] = {}
        query = (
            select(pending_items)
            .where(
                pending_items.c.account_id.in_(account_ids), pending_items.c.invoice_id.is_(None)
            )
            .order_by(pending_items.c.pending_item_id)
        )
        for row in self._s.execute(query):
            found.setdefault(row.account_id, []).append(_pending(row))
        return found

    def credit_balances(self, account_ids: Sequence[str]) -> dict[tuple[str, str], Decimal]:
        found: dict[tuple[str, str], Decimal] = {}
        rows = self._s.execute(
            select(
                account_credit.c.account_id, account_credit.c.currency, account_credit.c.amount
            ).where(account_credit.c.account_id.in_(account_ids))
        )
        for account_id, currency, amount in rows:
            found[(account_id, currency)] = found.get((account_id, currency), Decimal(0)) + amount
        return found

    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        """Serialise credit use with other writers: the same row lock ``finalize`` takes."""
        self._s.execute(
            update(accounts)
            .where(accounts.c.account_id.in_(sorted(account_ids)))
            .values(account_id=accounts.c.account_id)
        )

    def add_invoices(self, drafted: Sequence[tuple[Invoice, str]]) -> None:
        self._s.execute(
            insert(invoices), [{"cycle_key": key, **_invoice_values(inv)} for inv, key in drafted]
        )
        rows = [_line_values(inv.invoice_id, line) for inv, _ in drafted for line in inv.lines]
        for start in range(0, len(rows), _CHUNK):
            self._s.execute(insert(invoice_lines), rows[start : start + _CHUNK])

    def save_invoices(self, finalised: Sequence[Invoice]) -> None:
        """Store finalisation of invoices this transaction inserted (no one else sees them yet)."""
        if not finalised:
            return
        columns = (
            "status",
            "number",
            "series",
            "issue_date",
            "due_date",
            "finalize_time",
            "update_time",
            "credit_applied",
            "version",
        )
        statement = (
            update(invoices)
            .where(invoices.c.invoice_id == bindparam("b_invoice_id"))
            .values({name: bindparam(f"b_{name}") for name in columns})
        )
        params = []
        for invoice in finalised:
            values = _invoice_values(invoice)
            invoice.version += 1
            values["version"] = invoice.version
            params.append(
                {"b_invoice_id": invoice.invoice_id, **{f"b_{n}": values[n] for n in columns}}
            )
        self._s.execute(statement, params)

    def add_history(self, all_invoices: Sequence[Invoice]) -> None:
        rows = [
            {
                "invoice_id": inv.invoice_id,
                "from_status": e.from_status.value if e.from_status else None,
                "to_status": e.to_status.value,
                "action": e.action,
                "detail": e.detail[:500],
                "at": e.at,
            }
            for inv in all_invoices
            for e in inv.new_history
        ]
        for inv in all_invoices:
            inv.new_history = []
        if rows:
            self._s.execute(insert(invoice_history), rows)

    def take_usage(self, taken: Sequence[tuple[str, str, str]]) -> None:
        """(record id, its account, invoice id): the records these invoices carry.

        One statement per chunk: the invoice is chosen by the record's account (a child
        account's records go on its parent's invoice), and only the records read are
        named, so a record stored meanwhile waits for the next invoice. The unique
        (account, cycle) key stops a concurrent second taker.
        """
        for start in range(0, len(taken), 5000):
            chunk = taken[start : start + 5000]
            invoice_of = {account_id: invoice_id for _, account_id, invoice_id in chunk}
            result = self._s.execute(
                update(rated_usage)
                .where(
                    rated_usage.c.record_id.in_([record_id for record_id, _, _ in chunk]),
                    rated_usage.c.invoice_id.is_(None),
                )
                .values(invoice_id=case(invoice_of, value=rated_usage.c.account_id))
            )
            if result.rowcount != len(chunk):  # type: ignore[attr-defined]
                raise Aborted("rated usage was invoiced concurrently; retry")

    def next_numbers(self, series: str, count: int) -> int:
        """Take ``count`` consecutive numbers of a series; returns the first."""
        from services.invoicing.adapters.repositories import SqlNumbers

        SqlNumbers(self._s).ensure(series)
        last = self._s.scalar(
            update(number_series)
            .where(number_series.c.series == series)
            .values(last_number=number_series.c.last_number + count)
            .returning(number_series.c.last_number)
        )
        assert last is not None
        return int(last) - count + 1

    def add_credit(self, rows: Sequence[tuple[str, Money, str, str, datetime]]) -> None:
        if rows:
            self._s.execute(
                insert(account_credit),
                [
                    {
                        "account_id": a,
                        "amount": m.amount,
                        "currency": m.currency,
                        "reason": reason,
                        "reference_id": ref,
                        "create_time": at,
                    }
                    for a, m, reason, ref, at in rows
                ],
            )

    def set_items(
        self, bill_run_id: str, done: Sequence[tuple[str, ItemStatus, str]], at: datetime
    ) -> None:
        if not done:
            return
        statement = (
            update(bill_run_items)
            .where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id == bindparam("b_account_id"),
            )
            .values(
                status=bindparam("b_status"), invoice_id=bindparam("b_invoice_id"), update_time=at
            )
        )
        params: list[dict[str, Any]] = [
            {"b_account_id": a, "b_status": s.value, "b_invoice_id": i} for a, s, i in done
        ]
        self._s.execute(statement, params)
