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

from sqlalchemy import String, Table, bindparam, case, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.common.errors import Aborted
from services.common.money import Money
from services.common.sqltypes import ExactDecimal, UtcDateTime
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
from services.invoicing.domain.builder import RatedUsage, Segment, UsageTotal, total_usage
from services.invoicing.domain.model import Invoice, PendingItem
from services.invoicing.domain.parties import AccountFacts, ItemStatus

_CHUNK = 1000


# One statement takes every unbilled record of the message's accounts for their
# invoices and returns them added up per line (ADR 0056). The array parameters keep
# the statement text the same for every message (one parse, no per-id parameters).
_TAKE_USAGE_PG = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:account_ids AS text[]), CAST(:invoice_ids AS text[]),
            CAST(:befores AS timestamptz[])
        ) AS v(account_id, invoice_id, before)
    ), taken AS (
        UPDATE rated_usage AS r SET invoice_id = v.invoice_id
        FROM v
        WHERE r.account_id = v.account_id AND r.invoice_id IS NULL AND r.event_time < v.before
        RETURNING r.invoice_id, r.account_id, r.service, r.destination, r.unit,
                  r.quantity, r.net, r.event_time
    )
    SELECT invoice_id, account_id, service, destination, unit, count(*) AS records,
           sum(quantity) AS quantity, sum(net) AS net,
           min(event_time) AS first, max(event_time) AS last
    FROM taken
    GROUP BY invoice_id, account_id, service, destination, unit
    """
).columns(
    invoice_id=String,
    account_id=String,
    service=String,
    destination=String,
    unit=String,
    quantity=ExactDecimal,
    net=ExactDecimal,
    first=UtcDateTime,
    last=UtcDateTime,
)

_SET_ITEMS_PG = text(
    """
    UPDATE bill_run_items AS i
    SET status = v.status, invoice_id = v.invoice_id, update_time = :at
    FROM unnest(
        CAST(:account_ids AS text[]), CAST(:statuses AS text[]), CAST(:invoice_ids AS text[])
    ) AS v(account_id, status, invoice_id)
    WHERE i.bill_run_id = :bill_run_id AND i.account_id = v.account_id
      AND i.status = 'PENDING'
    """
).bindparams(bindparam("at", type_=UtcDateTime))


class SqlBatch:
    def __init__(self, session: Session) -> None:
        self._s = session
        self._postgres = session.get_bind().dialect.name == "postgresql"

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
            select(accounts, customers.c.language_code, customers.c.vat_id.label("customer_vat_id"))
            .join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
            .where(accounts.c.account_id.in_(account_ids))
        )
        return {row.account_id: _account(row) for row in self._s.execute(query)}

    def children(self, account_ids: Sequence[str]) -> dict[str, list[AccountFacts]]:
        query = (
            select(accounts, customers.c.language_code, customers.c.vat_id.label("customer_vat_id"))
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

    def add_lines(self, all_invoices: Sequence[Invoice]) -> None:
        rows = [_line_values(inv.invoice_id, line) for inv in all_invoices for line in inv.lines]
        self._insert(invoice_lines, rows)

    def add_invoices(self, drafted: Sequence[tuple[Invoice, str]]) -> None:
        """Insert invoices as they are now (finalised ones with their number), not lines."""
        if not drafted:
            return
        self._insert(invoices, [{"cycle_key": key, **_invoice_values(inv)} for inv, key in drafted])

    def _insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Many new rows: one ``COPY`` on PostgreSQL (psycopg adapts the values: Decimal
        to numeric, aware datetimes to timestamptz), chunked ``executemany`` elsewhere.
        The rows' values are already what the column types bind (no TypeDecorator
        conversion is needed on PostgreSQL for these tables)."""
        if not rows:
            return
        if not self._postgres:
            for start in range(0, len(rows), _CHUNK):
                self._s.execute(insert(table), rows[start : start + _CHUNK])
            return
        names = list(rows[0])
        cursor = self._s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        columns = ", ".join(f'"{name}"' for name in names)
        with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[name] for name in names])

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
        self._insert(invoice_history, rows)

    def take_usage_totals(
        self, takes: Sequence[tuple[str, str, datetime]]
    ) -> dict[tuple[str, str], list[UsageTotal]]:
        """(account id, invoice id, before): take the account's unbilled records before
        that instant for that invoice; returns them added up per (invoice, account).

        What is taken is exactly what is returned (the same statement on PostgreSQL;
        on SQLite the write lock of the first UPDATE keeps others out), so a record
        stored meanwhile is either on this invoice or waits for the next one.
        """
        found: dict[tuple[str, str], list[UsageTotal]] = {}
        if not takes:
            return found
        if self._postgres:
            rows = self._s.execute(
                _TAKE_USAGE_PG,
                {
                    "account_ids": [a for a, _, _ in takes],
                    "invoice_ids": [i for _, i, _ in takes],
                    "befores": [b for _, _, b in takes],
                },
            )
            for r in rows:
                found.setdefault((r.invoice_id, r.account_id), []).append(
                    UsageTotal(
                        r.service, r.destination, r.unit, int(r.records), r.quantity, r.net,
                        r.first, r.last,
                    )
                )  # fmt: skip
            return found
        self._s.execute(
            update(rated_usage)
            .where(
                rated_usage.c.account_id == bindparam("b_account_id"),
                rated_usage.c.invoice_id.is_(None),
                rated_usage.c.event_time < bindparam("b_before", type_=UtcDateTime),
            )
            .values(invoice_id=bindparam("b_invoice_id")),
            [{"b_account_id": a, "b_invoice_id": i, "b_before": b} for a, i, b in takes],
        )
        records: dict[tuple[str, str], list[RatedUsage]] = {}
        invoice_ids = sorted({i for _, i, _ in takes})
        for start in range(0, len(invoice_ids), _CHUNK):
            query = select(rated_usage).where(
                rated_usage.c.invoice_id.in_(invoice_ids[start : start + _CHUNK])
            )
            for r in self._s.execute(query):
                records.setdefault((r.invoice_id, r.account_id), []).append(
                    RatedUsage(
                        r.record_id, r.account_id, r.service, r.destination, r.quantity, r.unit,
                        r.net, r.event_time,
                    )
                )  # fmt: skip
        return {key: total_usage(group) for key, group in records.items()}

    def release_usage(self, invoice_ids: Sequence[str]) -> None:
        """Give back what ``take_usage_totals`` took for invoices that were not made."""
        if invoice_ids:
            self._s.execute(
                update(rated_usage)
                .where(rated_usage.c.invoice_id.in_(invoice_ids))
                .values(invoice_id=None)
            )

    def take_pending(self, taken: Sequence[tuple[Sequence[str], str]]) -> None:
        """(pending item ids, invoice id): one statement for the whole message."""
        invoice_of = {item_id: invoice_id for item_ids, invoice_id in taken for item_id in item_ids}
        if not invoice_of:
            return
        result = self._s.execute(
            update(pending_items)
            .where(
                pending_items.c.pending_item_id.in_(list(invoice_of)),
                pending_items.c.invoice_id.is_(None),
            )
            .values(invoice_id=case(invoice_of, value=pending_items.c.pending_item_id))
        )
        if result.rowcount != len(invoice_of):  # type: ignore[attr-defined]
            raise Aborted("pending items were invoiced concurrently; retry")

    def next_numbers(self, series: str, count: int) -> int:
        """Take ``count`` consecutive numbers of a series; returns the first.

        One upsert: creates the series row if it is new, and its row lock is held
        until the transaction ends, so numbers stay gapless (ADR 0025).
        """
        module: Any = postgresql if self._postgres else sqlite
        statement = module.insert(number_series).values(series=series, last_number=count)
        last = self._s.scalar(
            statement.on_conflict_do_update(
                index_elements=["series"],
                set_={"last_number": number_series.c.last_number + count},
            ).returning(number_series.c.last_number)
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
        """Move PENDING items to their outcome. Only PENDING ones: a duplicate delivery
        that read an item as PENDING before the first delivery committed, then found
        that delivery's invoice, must not turn its FINALIZED into SKIPPED."""
        if not done:
            return
        if self._postgres:
            self._s.execute(
                _SET_ITEMS_PG,
                {
                    "bill_run_id": bill_run_id,
                    "at": at,
                    "account_ids": [a for a, _, _ in done],
                    "statuses": [s.value for _, s, _ in done],
                    "invoice_ids": [i for _, _, i in done],
                },
            )
            return
        statement = (
            update(bill_run_items)
            .where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id == bindparam("b_account_id"),
                bill_run_items.c.status == ItemStatus.PENDING.value,
            )
            .values(
                status=bindparam("b_status"), invoice_id=bindparam("b_invoice_id"), update_time=at
            )
        )
        params: list[dict[str, Any]] = [
            {"b_account_id": a, "b_status": s.value, "b_invoice_id": i} for a, s, i in done
        ]
        self._s.execute(statement, params)

    def fail_items(
        self, bill_run_id: str, failed: Sequence[tuple[str, str, str]], at: datetime
    ) -> None:
        """(account id, reason, message): PENDING items to FAILED, one ``executemany``
        for the whole message (pipelined by psycopg 3); like ``set_items``, only PENDING
        ones, so a duplicate delivery never overwrites the first one's outcome."""
        if not failed:
            return
        statement = (
            update(bill_run_items)
            .where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id == bindparam("b_account_id"),
                bill_run_items.c.status == ItemStatus.PENDING.value,
            )
            .values(
                status=ItemStatus.FAILED.value,
                invoice_id="",
                error_reason=bindparam("b_reason"),
                error_message=bindparam("b_message"),
                update_time=at,
            )
        )
        self._s.execute(
            statement,
            [{"b_account_id": a, "b_reason": r, "b_message": m[:500]} for a, r, m in failed],
        )
