"""SQL repositories of invoicing (parties, segments, usage, pending items, credit, numbers).

Invoices carry a ``version``: ``save`` updates only the row with the version it
read, so of two concurrent changes to one invoice the second finds nothing to
update and its unit of work fails with ABORTED (retryable) instead of
overwriting the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.common.errors import Aborted
from services.common.money import Money
from services.invoicing.adapters.orm import (
    account_credit,
    accounts,
    customer_versions,
    customers,
    number_series,
    pending_items,
    rated_usage,
    segments,
)
from services.invoicing.domain.builder import RatedUsage, Segment
from services.invoicing.domain.model import (
    LineKind,
    PendingItem,
)
from services.invoicing.domain.parties import AccountFacts, CustomerFacts

_CUSTOMER_FIELDS = tuple(f.name for f in fields(CustomerFacts))


def _upsert(session: Session, table: Any, values: dict[str, Any], key: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table).values(**values)
    changes = {k: v for k, v in values.items() if k not in key}
    session.execute(statement.on_conflict_do_update(index_elements=key, set_=changes))


def _exact_sum(session: Session, query: Any) -> Decimal:
    """Sum of one decimal column, added up here: SQLite's SUM of decimal text is a float."""
    return sum((value for value in session.scalars(query)), Decimal(0))


class SqlParties:
    """Customers and accounts as learnt from accounts' events."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def put_customer(
        self, customer: CustomerFacts, *, effective_time: datetime, recorded_time: datetime
    ) -> None:
        values = vars(customer).copy()
        _upsert(self._s, customers, values, ["customer_id"])
        self._s.execute(
            insert(customer_versions).values(
                **values, effective_time=effective_time, recorded_time=recorded_time
            )
        )

    def customer(self, customer_id: str) -> CustomerFacts | None:
        row = self._s.execute(
            select(customers).where(customers.c.customer_id == customer_id)
        ).first()
        return CustomerFacts(**row._mapping) if row else None

    def customer_as_of(self, customer_id: str, at: datetime) -> CustomerFacts | None:
        # Both times bound the choice: a change that happened before ``at`` but reached
        # invoicing after it was not on the document sent at ``at``, so it never is.
        v = customer_versions.c
        row = self._s.execute(
            select(*(v[name] for name in _CUSTOMER_FIELDS))
            .where(v.customer_id == customer_id, v.effective_time <= at, v.recorded_time <= at)
            .order_by(v.version_id.desc())
            .limit(1)
        ).first()
        return CustomerFacts(**row._mapping) if row else None

    def put_account(self, account: AccountFacts) -> None:
        values = {
            "account_id": account.account_id,
            "customer_id": account.customer_id,
            "currency_code": account.currency,
            "time_zone": account.time_zone,
            "bill_cycle_day": account.bill_cycle_day,
            "tax_region": account.tax_region,
            "payment_terms_days": account.payment_terms_days,
            "payment_mode": account.payment_mode,
            "parent_account_id": account.parent_account_id,
            "state": account.state,
            "reseller_id": account.reseller_id,
            "group_id": account.group_id,
            "create_time": account.create_time,
        }
        _upsert(self._s, accounts, values, ["account_id"])

    def set_account_state(self, account_id: str, state: str) -> None:
        self._s.execute(
            update(accounts).where(accounts.c.account_id == account_id).values(state=state)
        )

    def account(self, account_id: str) -> AccountFacts | None:
        query = (
            select(accounts, customers.c.language_code, customers.c.vat_id.label("customer_vat_id"))
            .join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
            .where(accounts.c.account_id == account_id)
        )
        row = self._s.execute(query).first()
        return _account(row) if row else None

    def accounts_in_scope(
        self, *, bill_cycle_day: int, reseller_id: str, group_id: str, account_id: str
    ) -> list[AccountFacts]:
        query = select(
            accounts, customers.c.language_code, customers.c.vat_id.label("customer_vat_id")
        ).join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
        if bill_cycle_day:
            query = query.where(accounts.c.bill_cycle_day == bill_cycle_day)
        if reseller_id:
            query = query.where(accounts.c.reseller_id == reseller_id)
        if group_id:
            query = query.where(accounts.c.group_id == group_id)
        if account_id:
            query = query.where(accounts.c.account_id == account_id)
        return [_account(row) for row in self._s.execute(query.order_by(accounts.c.account_id))]

    def cycle_zones(self) -> list[tuple[int, str]]:
        """Every (bill cycle day, time zone) some account has: when cycles end anywhere."""
        query = select(accounts.c.bill_cycle_day, accounts.c.time_zone).distinct()
        return [(int(bcd), str(tz)) for bcd, tz in self._s.execute(query)]

    def children(self, account_id: str) -> list[AccountFacts]:
        query = (
            select(accounts, customers.c.language_code, customers.c.vat_id.label("customer_vat_id"))
            .join(customers, customers.c.customer_id == accounts.c.customer_id, isouter=True)
            .where(accounts.c.parent_account_id == account_id)
            .order_by(accounts.c.account_id)
        )
        return [_account(row) for row in self._s.execute(query)]

    def update_customer_of_accounts(self, customer: CustomerFacts) -> None:
        self._s.execute(
            update(accounts)
            .where(accounts.c.customer_id == customer.customer_id)
            .values(reseller_id=customer.reseller_id, group_id=customer.group_id)
        )


def _account(row: Row[Any]) -> AccountFacts:
    m = row._mapping
    return AccountFacts(
        account_id=m["account_id"],
        customer_id=m["customer_id"],
        currency=m["currency_code"],
        time_zone=m["time_zone"],
        bill_cycle_day=m["bill_cycle_day"],
        tax_region=m["tax_region"],
        payment_terms_days=m["payment_terms_days"],
        payment_mode=m["payment_mode"],
        parent_account_id=m["parent_account_id"],
        state=m["state"],
        reseller_id=m["reseller_id"],
        group_id=m["group_id"],
        create_time=m["create_time"],
        language_code=m["language_code"] or "en",
        customer_vat_id=m.get("customer_vat_id") or "",
    )


class SqlSubscriptions:
    """Segments: which plan and add-ons ran when."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def start(self, segment: Segment, account_id: str) -> None:
        exists = self._s.execute(
            select(segments.c.segment_id).where(
                segments.c.subscription_id == segment.subscription_id,
                segments.c.item_code == segment.item_code,
                segments.c.start_time == segment.start,
            )
        ).first()
        if exists:
            return
        self._s.execute(
            insert(segments).values(
                subscription_id=segment.subscription_id,
                account_id=account_id,
                item_code=segment.item_code,
                is_add_on=segment.is_add_on,
                quantity=segment.quantity,
                start_time=segment.start,
                end_time=segment.end,
            )
        )

    def end(
        self, subscription_id: str, item_code: str | None, at: datetime, *, add_ons: bool
    ) -> list[Segment]:
        """End the open segments (of ``item_code``, or every plan/add-on) at ``at``."""
        conditions = [
            segments.c.subscription_id == subscription_id,
            segments.c.is_add_on == add_ons,
            or_(segments.c.end_time.is_(None), segments.c.end_time > at),
            segments.c.start_time < at,
        ]
        if item_code is not None:
            conditions.append(segments.c.item_code == item_code)
        rows = self._s.execute(select(segments).where(*conditions)).all()
        if rows:
            self._s.execute(
                update(segments)
                .where(segments.c.segment_id.in_([r.segment_id for r in rows]))
                .values(end_time=at)
            )
        return [_segment(r) for r in rows]

    def of_account(self, account_id: str) -> list[Segment]:
        query = (
            select(segments)
            .where(segments.c.account_id == account_id)
            .order_by(segments.c.segment_id)
        )
        return [_segment(r) for r in self._s.execute(query)]

    def of_subscription(self, subscription_id: str) -> list[Segment]:
        query = (
            select(segments)
            .where(segments.c.subscription_id == subscription_id)
            .order_by(segments.c.segment_id)
        )
        return [_segment(r) for r in self._s.execute(query)]


def _segment(row: Row[Any]) -> Segment:
    return Segment(
        row.subscription_id,
        row.item_code,
        row.is_add_on,
        row.quantity,
        row.start_time,
        row.end_time,
    )


class SqlUsage:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_many(self, records: Sequence[tuple[RatedUsage, str]]) -> int:
        """Store new records (record id, currency); a record already stored is left alone."""
        if not records:
            return 0
        ids = [r.record_id for r, _ in records]
        known = set(
            self._s.scalars(select(rated_usage.c.record_id).where(rated_usage.c.record_id.in_(ids)))
        )
        rows = [
            {
                "record_id": r.record_id,
                "account_id": r.account_id,
                "service": r.service,
                "destination": r.destination,
                "quantity": r.quantity,
                "unit": r.unit,
                "net": r.net,
                "currency": currency,
                "event_time": r.event_time,
                "invoice_id": None,
            }
            for r, currency in records
            if r.record_id not in known
        ]
        if rows:
            self._s.execute(insert(rated_usage), rows)
        return len(rows)

    def unbilled(self, account_id: str, before: datetime) -> list[RatedUsage]:
        query = select(rated_usage).where(
            rated_usage.c.account_id == account_id,
            rated_usage.c.invoice_id.is_(None),
            rated_usage.c.event_time < before,
        )
        return [
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
            for r in self._s.execute(
                query.order_by(rated_usage.c.event_time, rated_usage.c.record_id)
            )
        ]

    def take(self, record_ids: Sequence[str], invoice_id: str) -> None:
        for start in range(0, len(record_ids), 500):
            chunk = record_ids[start : start + 500]
            result = self._s.execute(
                update(rated_usage)
                .where(rated_usage.c.record_id.in_(chunk), rated_usage.c.invoice_id.is_(None))
                .values(invoice_id=invoice_id)
            )
            if result.rowcount != len(chunk):  # type: ignore[attr-defined]
                raise Aborted("rated usage was invoiced concurrently; retry")

    def release(self, invoice_id: str) -> None:
        self._s.execute(
            update(rated_usage)
            .where(rated_usage.c.invoice_id == invoice_id)
            .values(invoice_id=None)
        )

    def get(self, record_id: str) -> tuple[Decimal, str, str | None] | None:
        row = self._s.execute(
            select(rated_usage.c.net, rated_usage.c.account_id, rated_usage.c.invoice_id).where(
                rated_usage.c.record_id == record_id
            )
        ).first()
        return (row.net, row.account_id, row.invoice_id) if row else None

    def set_net(self, record_id: str, net: Decimal) -> None:
        self._s.execute(
            update(rated_usage).where(rated_usage.c.record_id == record_id).values(net=net)
        )

    def detail(self, invoice_id: str) -> list[RatedUsage]:
        query = select(rated_usage).where(rated_usage.c.invoice_id == invoice_id)
        return [
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
            for r in self._s.execute(
                query.order_by(rated_usage.c.event_time, rated_usage.c.record_id)
            )
        ]


class SqlPendingItems:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, item: PendingItem, currency: str) -> None:
        self._s.execute(
            insert(pending_items).values(
                pending_item_id=item.pending_item_id,
                account_id=item.account_id,
                kind=item.kind.value,
                description=item.description,
                service=item.service,
                amount=item.amount.amount if item.amount else None,
                currency=currency,
                tax_category=item.tax_category,
                tax_rate=item.tax_rate,
                reference_invoice_id=item.reference_invoice_id,
                period_start=item.period_start,
                period_end=item.period_end,
                fee_plan_code=item.fee_plan_code,
                subscription_id=item.subscription_id,
                quantity=item.quantity,
                days_used=item.days_used,
                days_in_cycle=item.days_in_cycle,
                credit=item.credit,
                invoice_id=None,
                create_time=item.create_time,
            )
        )

    def get(self, pending_item_id: str) -> PendingItem | None:
        row = self._s.execute(
            select(pending_items).where(pending_items.c.pending_item_id == pending_item_id)
        ).first()
        return _pending(row) if row else None

    def open_of(
        self, account_id: str, *, after: str = "", limit: int = 10_000
    ) -> list[PendingItem]:
        query = select(pending_items).where(
            pending_items.c.account_id == account_id,
            pending_items.c.invoice_id.is_(None),
            pending_items.c.pending_item_id > after,
        )
        rows = self._s.execute(query.order_by(pending_items.c.pending_item_id).limit(limit))
        return [_pending(r) for r in rows]

    def take(self, item_ids: Sequence[str], invoice_id: str) -> None:
        if not item_ids:
            return
        result = self._s.execute(
            update(pending_items)
            .where(
                pending_items.c.pending_item_id.in_(item_ids), pending_items.c.invoice_id.is_(None)
            )
            .values(invoice_id=invoice_id)
        )
        if result.rowcount != len(item_ids):  # type: ignore[attr-defined]
            raise Aborted("pending items were invoiced concurrently; retry")

    def release(self, invoice_id: str) -> None:
        self._s.execute(
            update(pending_items)
            .where(pending_items.c.invoice_id == invoice_id)
            .values(invoice_id=None)
        )


def _pending(row: Row[Any]) -> PendingItem:
    return PendingItem(
        pending_item_id=row.pending_item_id,
        account_id=row.account_id,
        kind=LineKind(row.kind),
        description=row.description,
        service=row.service,
        create_time=row.create_time,
        amount=Money(row.amount, row.currency) if row.amount is not None else None,
        tax_category=row.tax_category,
        tax_rate=row.tax_rate,
        reference_invoice_id=row.reference_invoice_id,
        period_start=row.period_start,
        period_end=row.period_end,
        fee_plan_code=row.fee_plan_code,
        subscription_id=row.subscription_id,
        quantity=row.quantity,
        days_used=row.days_used,
        days_in_cycle=row.days_in_cycle,
        credit=row.credit,
        invoice_id=row.invoice_id or "",
    )


class SqlAccountCredit:
    def __init__(self, session: Session) -> None:
        self._s = session

    def balance(self, account_id: str, currency: str) -> Money:
        total = _exact_sum(
            self._s,
            select(account_credit.c.amount).where(
                account_credit.c.account_id == account_id, account_credit.c.currency == currency
            ),
        )
        return Money(total, currency)

    def add(
        self, account_id: str, amount: Money, reason: str, reference_id: str, at: datetime
    ) -> None:
        self._s.execute(
            insert(account_credit).values(
                account_id=account_id,
                amount=amount.amount,
                currency=amount.currency,
                reason=reason[:500],
                reference_id=reference_id,
                create_time=at,
            )
        )

    def entries(self, account_id: str) -> list[tuple[Money, str, str, datetime]]:
        rows = self._s.execute(
            select(account_credit)
            .where(account_credit.c.account_id == account_id)
            .order_by(account_credit.c.entry_id.desc())
            .limit(1000)
        )
        found = [
            (Money(r.amount, r.currency), r.reason, r.reference_id, r.create_time) for r in rows
        ]
        return list(reversed(found))

    def lock(self, account_id: str) -> None:
        """Serialise credit use per account: lock the account row until commit."""
        self._s.execute(
            update(accounts)
            .where(accounts.c.account_id == account_id)
            .values(account_id=account_id)
        )


class SqlNumbers:
    """Gapless numbers: the series row is locked by the UPDATE until the transaction ends."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def ensure(self, series: str) -> None:
        """Create the series row if it is new (a concurrent creator is no conflict)."""
        bind = self._s.get_bind()
        module: Any = postgresql if bind.dialect.name == "postgresql" else sqlite
        self._s.execute(
            module.insert(number_series)
            .values(series=series, last_number=0)
            .on_conflict_do_nothing(index_elements=["series"])
        )

    def next(self, series: str) -> int:
        self.ensure(series)
        number = self._s.scalar(
            update(number_series)
            .where(number_series.c.series == series)
            .values(last_number=number_series.c.last_number + 1)
            .returning(number_series.c.last_number)
        )
        assert number is not None
        return int(number)
