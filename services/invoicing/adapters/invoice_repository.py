"""SQL repository of invoices: rows <-> ``Invoice`` with lines, history and payments.

Invoices carry a ``version``: ``save`` updates only the row with the version it
read, so of two concurrent changes to one invoice the second finds nothing to
update and its unit of work fails with ABORTED (retryable) instead of
overwriting the first.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from services.common.errors import Aborted
from services.common.money import Money
from services.invoicing.adapters.orm import (
    _MONEY,
    invoice_history,
    invoice_lines,
    invoices,
    payment_allocations,
)
from services.invoicing.adapters.repositories import _exact_sum
from services.invoicing.domain.arithmetic import VatBreakdown
from services.invoicing.domain.model import (
    HistoryEntry,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
)
from services.invoicing.service_layer.unit_of_work import InvoiceFilter


class SqlInvoices:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, invoice: Invoice, cycle_key: str) -> None:
        self._s.execute(insert(invoices).values(cycle_key=cycle_key, **_invoice_values(invoice)))
        if invoice.lines:
            self._s.execute(
                insert(invoice_lines),
                [_line_values(invoice.invoice_id, ln) for ln in invoice.lines],
            )
        self._write_history(invoice)

    def exists_for_cycle(self, account_id: str, cycle_key: str) -> str | None:
        return self._s.scalar(
            select(invoices.c.invoice_id).where(
                invoices.c.account_id == account_id, invoices.c.cycle_key == cycle_key
            )
        )

    def get(self, invoice_id: str, *, lines: bool = True, lock: bool = False) -> Invoice | None:
        query = select(invoices).where(invoices.c.invoice_id == invoice_id)
        if lock:
            query = query.with_for_update()
        row = self._s.execute(query).first()
        if row is None:
            return None
        return _invoice(row, self._lines(invoice_id, row.currency) if lines else [])

    def _lines(self, invoice_id: str, currency: str) -> list[InvoiceLine]:
        rows = self._s.execute(
            select(invoice_lines)
            .where(invoice_lines.c.invoice_id == invoice_id)
            .order_by(invoice_lines.c.line_no)
        )
        return [_line(row, currency) for row in rows]

    def save(self, invoice: Invoice) -> None:
        values = _invoice_values(invoice)
        values["version"] = invoice.version + 1
        result = self._s.execute(
            update(invoices)
            .where(
                invoices.c.invoice_id == invoice.invoice_id, invoices.c.version == invoice.version
            )
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Aborted(f"invoice {invoice.invoice_id} changed concurrently; retry")
        invoice.version += 1
        self._write_history(invoice)

    def delete_draft(self, invoice_id: str) -> None:
        self._s.execute(delete(invoice_lines).where(invoice_lines.c.invoice_id == invoice_id))
        self._s.execute(delete(invoice_history).where(invoice_history.c.invoice_id == invoice_id))
        self._s.execute(
            delete(invoices).where(
                invoices.c.invoice_id == invoice_id, invoices.c.status == "DRAFT"
            )
        )

    def _write_history(self, invoice: Invoice) -> None:
        if invoice.new_history:
            self._s.execute(
                insert(invoice_history),
                [
                    {
                        "invoice_id": invoice.invoice_id,
                        "from_status": e.from_status.value if e.from_status else None,
                        "to_status": e.to_status.value,
                        "action": e.action,
                        "detail": e.detail[:500],
                        "at": e.at,
                    }
                    for e in invoice.new_history
                ],
            )
            invoice.new_history = []

    def history(self, invoice_id: str) -> list[HistoryEntry]:
        rows = self._s.execute(
            select(invoice_history)
            .where(invoice_history.c.invoice_id == invoice_id)
            .order_by(invoice_history.c.entry_id)
        )
        return [
            HistoryEntry(
                InvoiceStatus(r.from_status) if r.from_status else None,
                InvoiceStatus(r.to_status),
                r.action,
                r.detail,
                r.at,
            )
            for r in rows
        ]

    def ids_of_run(self, bill_run_id: str, status: InvoiceStatus | None = None) -> list[str]:
        query = select(invoices.c.invoice_id).where(invoices.c.bill_run_id == bill_run_id)
        if status is not None:
            query = query.where(invoices.c.status == status.value)
        return list(self._s.scalars(query.order_by(invoices.c.invoice_id)))

    def totals_of_run(self, bill_run_id: str) -> dict[str, str]:
        if self._s.get_bind().dialect.name == "sqlite":
            # SQLite sums the stored decimal text as binary floats: add up exactly here.
            sums: dict[str, Decimal] = {}
            for currency, gross in self._s.execute(
                select(invoices.c.currency, invoices.c.total_gross).where(
                    invoices.c.bill_run_id == bill_run_id
                )
            ):
                sums[currency] = sums.get(currency, Decimal(0)) + gross
            return {currency: str(total) for currency, total in sums.items()}
        rows = self._s.execute(
            select(invoices.c.currency, func.sum(invoices.c.total_gross))
            .where(invoices.c.bill_run_id == bill_run_id)
            .group_by(invoices.c.currency)
        )
        return {currency: str(total) for currency, total in rows}

    def search(self, where: InvoiceFilter, *, today: date, after: str, limit: int) -> list[Invoice]:
        c = invoices.c
        conditions: list[Any] = []
        simple = {
            "customer_id": where.customer_id,
            "account_id": where.account_id,
            "reseller_id": where.reseller_id,
            "group_id": where.group_id,
            "bill_run_id": where.bill_run_id,
            "number": where.number,
        }
        for name, value in simple.items():
            if value:
                conditions.append(c[name] == value)
        if where.statuses:
            conditions.append(c.status.in_([s.value for s in where.statuses]))
        if where.min_total is not None:
            conditions.append(c.total_gross >= where.min_total)
        if where.max_total is not None:
            conditions.append(c.total_gross <= where.max_total)
        if where.currency:
            conditions.append(c.currency == where.currency)
        if where.issue_date_from:
            conditions.append(c.issue_date >= where.issue_date_from)
        if where.issue_date_to:
            conditions.append(c.issue_date <= where.issue_date_to)
        if where.period_start_date:
            conditions.append(c.cycle_key == where.period_start_date.isoformat())
        if where.bill_cycle_day:
            conditions.append(c.bill_cycle_day == where.bill_cycle_day)
        if where.min_dunning_level:
            conditions.append(c.dunning_level >= where.min_dunning_level)
        if where.overdue_only:
            conditions.append(c.status.in_(["OPEN", "PARTIALLY_PAID"]))
            conditions.append(c.due_date < today)
        if where.disputed_only:
            conditions.append(c.disputed_amount > 0)
        if after:
            conditions.append(c.invoice_id < after)
        query = select(invoices).where(and_(*conditions)).order_by(c.invoice_id.desc()).limit(limit)
        return [_invoice(row, []) for row in self._s.execute(query)]

    def payments(self, invoice_id: str) -> list[tuple[str, Money, str, datetime]]:
        rows = self._s.execute(
            select(payment_allocations)
            .where(payment_allocations.c.invoice_id == invoice_id)
            .order_by(payment_allocations.c.allocation_id)
        )
        return [(r.payment_id, Money(r.amount, r.currency), r.kind, r.record_time) for r in rows]

    def add_payment(
        self, invoice_id: str, payment_id: str, amount: Money, kind: str, at: datetime
    ) -> None:
        self._s.execute(
            insert(payment_allocations).values(
                invoice_id=invoice_id,
                payment_id=payment_id,
                amount=amount.amount,
                currency=amount.currency,
                kind=kind,
                record_time=at,
            )
        )

    def allocated_by(self, invoice_id: str, payment_id: str) -> Decimal:
        return _exact_sum(
            self._s,
            select(payment_allocations.c.amount).where(
                payment_allocations.c.invoice_id == invoice_id,
                payment_allocations.c.payment_id == payment_id,
            ),
        )


def _invoice_values(invoice: Invoice) -> dict[str, Any]:
    values: dict[str, Any] = {
        "invoice_id": invoice.invoice_id,
        "account_id": invoice.account_id,
        "customer_id": invoice.customer_id,
        "status": invoice.status.value,
        "number": invoice.number or None,
        "series": invoice.series,
        "currency": invoice.currency,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "finalize_time": invoice.finalize_time,
        "create_time": invoice.create_time,
        "update_time": invoice.update_time or invoice.create_time,
        "breakdown": json.dumps(
            [
                [
                    g.tax_category,
                    str(g.tax_rate),
                    str(g.taxable_amount.amount),
                    str(g.tax_amount.amount),
                ]
                for g in invoice.breakdown
            ]
        ),
        "dunning_level": invoice.dunning_level,
        "language_code": invoice.language_code,
        "reseller_id": invoice.reseller_id,
        "group_id": invoice.group_id,
        "tax_region": invoice.tax_region,
        "bill_cycle_day": invoice.bill_cycle_day,
        "payment_terms_days": invoice.payment_terms_days,
        "time_zone": invoice.time_zone,
        "bill_run_id": invoice.bill_run_id,
        "version": invoice.version,
    }
    for name in _MONEY:
        money: Money | None = getattr(invoice, name)
        values[name] = money.amount if money is not None else Decimal(0)
    return values


def _invoice(row: Row[Any], lines: list[InvoiceLine]) -> Invoice:
    m = row._mapping
    cur = m["currency"]
    breakdown = tuple(
        VatBreakdown(cat, Decimal(rate), Money(Decimal(taxable), cur), Money(Decimal(tax), cur))
        for cat, rate, taxable, tax in json.loads(m["breakdown"])
    )
    invoice = Invoice(
        invoice_id=m["invoice_id"],
        account_id=m["account_id"],
        customer_id=m["customer_id"],
        currency=cur,
        period_start=m["period_start"],
        period_end=m["period_end"],
        lines=lines,
        language_code=m["language_code"],
        reseller_id=m["reseller_id"],
        group_id=m["group_id"],
        tax_region=m["tax_region"],
        bill_cycle_day=m["bill_cycle_day"],
        payment_terms_days=m["payment_terms_days"],
        time_zone=m["time_zone"],
        create_time=m["create_time"],
        bill_run_id=m["bill_run_id"],
        status=InvoiceStatus(m["status"]),
        number=m["number"] or "",
        series=m["series"],
        issue_date=m["issue_date"],
        due_date=m["due_date"],
        finalize_time=m["finalize_time"],
        update_time=m["update_time"],
        breakdown=breakdown,
        dunning_level=m["dunning_level"],
        version=m["version"],
    )
    for name in _MONEY:
        setattr(invoice, name, Money(m[name], cur))
    invoice.breakdown = breakdown  # the stored breakdown, not one of the (unloaded) lines
    return invoice


def _line_values(invoice_id: str, line: InvoiceLine) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "line_no": int(line.line_id),
        "kind": line.kind.value,
        "description": line.description[:500],
        "service": line.service,
        "destination_group": line.destination_group,
        "time_band": line.time_band,
        "quantity": line.quantity,
        "unit_code": line.unit_code,
        "unit_price": line.unit_price.amount,
        "allowance": line.allowance.amount if line.allowance else None,
        "net_amount": line.net_amount.amount,
        "tax_category": line.tax_category,
        "tax_rate": line.tax_rate,
        "period_start": line.period_start,
        "period_end": line.period_end,
        "subscription_id": line.subscription_id,
        "plan_code": line.plan_code,
        "source_account_id": line.source_account_id,
        "detail_count": line.detail_count,
        "unrounded_amount": line.unrounded_amount,
    }


def _line(row: Row[Any], currency: str) -> InvoiceLine:
    return InvoiceLine(
        line_id=str(row.line_no),
        kind=LineKind(row.kind),
        description=row.description,
        service=row.service,
        destination_group=row.destination_group,
        time_band=row.time_band,
        quantity=row.quantity,
        unit_code=row.unit_code,
        unit_price=Money(row.unit_price, currency),
        allowance=Money(row.allowance, currency) if row.allowance is not None else None,
        net_amount=Money(row.net_amount, currency),
        tax_category=row.tax_category,
        tax_rate=row.tax_rate,
        period_start=row.period_start,
        period_end=row.period_end,
        subscription_id=row.subscription_id,
        plan_code=row.plan_code,
        source_account_id=row.source_account_id,
        detail_count=row.detail_count,
        unrounded_amount=row.unrounded_amount,
    )
