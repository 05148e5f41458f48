"""Operator reports (ANA-1) computed from what the services hold, never from a copy.

- ``consumption``: rated usage (rating's current results) in a period, per service
  and currency: records, quantity per unit, gross amount;
- ``tariff-popularity``: active subscriptions per plan (accounts), with the share;
- ``revenue``: issued invoices per month of issue and currency (invoicing);
- ``receivables-aging``: what open invoices still owe, by days past due
  (not due, 0-30, 31-60, 61-90, 90+) on a given day;
- ``payment-discipline``: per customer, invoices paid by the due date (the day a
  payment landed read in the account's zone, as the due date is), late, overdue.

Each report is JSON or CSV
(``?format=csv``) under ``/v1/reports/``, a page with charts at ``/reports``, and
``reckon report NAME`` in the terminal (same functions).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from pydantic import BaseModel

from gateway.auth import Principal, require
from gateway.charts import bar_chart
from gateway.clients import ServiceClients
from gateway.problems import openapi_problem_responses, operation_id
from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.invoicing.v1 import invoicing_pb2 as ipb
from reckon.rating.v1 import rating_pb2 as rpb

router = APIRouter(
    prefix="/v1/reports",
    responses=openapi_problem_responses(400, 401, 403, 429),
    generate_unique_id_function=operation_id,
)
pages = APIRouter()
REPORTS = (
    "consumption",
    "tariff-popularity",
    "revenue",
    "receivables-aging",
    "payment-discipline",
)
# Invoices that count as issued: finalised and not voided.
ISSUED = (
    ipb.InvoiceStatus.INVOICE_STATUS_OPEN,
    ipb.InvoiceStatus.INVOICE_STATUS_PAID,
    ipb.InvoiceStatus.INVOICE_STATUS_PARTIALLY_PAID,
    ipb.InvoiceStatus.INVOICE_STATUS_UNCOLLECTIBLE,
)
UNPAID = (
    ipb.InvoiceStatus.INVOICE_STATUS_OPEN,
    ipb.InvoiceStatus.INVOICE_STATUS_PARTIALLY_PAID,
)
AGING_BUCKETS = ("not_due", "0-30", "31-60", "61-90", "90+")
PAGE = 1000


@dataclass(frozen=True)
class Report:
    name: str
    columns: tuple[str, ...]
    rows: list[dict[str, str | int]]
    period_start: datetime | None = None
    period_end: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "period_start": _iso(self.period_start),
            "period_end": _iso(self.period_end),
            "columns": list(self.columns),
            "rows": self.rows,
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _decimal(money: Any) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / Decimal(10) ** 9


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _stamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    # A time without a zone (``--from 2026-03-01``) is read as UTC, never as local time.
    stamp.FromDatetime(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


async def consumption(
    clients: ServiceClients, start: datetime | None, end: datetime | None
) -> Report:
    records: dict[tuple[str, str, str], int] = defaultdict(int)
    quantity: dict[tuple[str, str, str], int] = defaultdict(int)
    amount: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    token = ""
    while True:
        page = await clients.rating.ListRatedUsage(
            rpb.ListRatedUsageRequest(
                page_size=PAGE, page_token=token, period_start=_stamp(start), period_end=_stamp(end)
            ),
            timeout=clients.timeout,
        )
        for usage in page.rated_usage:
            unit = rpb.QuantityUnit.Name(usage.quantity.unit) if usage.HasField("quantity") else ""
            key = (usage.service, unit, usage.amount.currency_code)
            records[key] += 1
            quantity[key] += usage.quantity.value
            amount[key] += _decimal(usage.amount)
        token = page.next_page_token
        if not token:
            break
    rows: list[dict[str, str | int]] = [
        {
            "service": service,
            "unit": unit.removeprefix("QUANTITY_UNIT_").lower(),
            "currency_code": currency,
            "records": records[key],
            "quantity": quantity[key],
            "amount": _text(amount[key]),
        }
        for key in sorted(records)
        for service, unit, currency in [key]
    ]
    columns = ("service", "unit", "currency_code", "records", "quantity", "amount")
    return Report("consumption", columns, rows, start, end)


async def tariff_popularity(clients: ServiceClients) -> Report:
    counts: dict[str, int] = defaultdict(int)
    token = ""
    while True:
        page = await clients.accounts.ListSubscriptions(
            apb.ListSubscriptionsRequest(
                page_size=PAGE,
                page_token=token,
                state=apb.SubscriptionState.SUBSCRIPTION_STATE_ACTIVE,
            ),
            timeout=clients.timeout,
        )
        for subscription in page.subscriptions:
            counts[subscription.plan_code] += 1
        token = page.next_page_token
        if not token:
            break
    total = sum(counts.values())
    rows: list[dict[str, str | int]] = [
        {
            "plan_code": plan,
            "subscribers": count,
            # Percent with one decimal, rounded half-even by Decimal's default context.
            "share_percent": _text(
                (Decimal(count) * 100 / Decimal(total)).quantize(Decimal("0.1"))
            ),
        }
        for plan, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return Report("tariff-popularity", ("plan_code", "subscribers", "share_percent"), rows)


def _date(value: Any) -> date | None:
    return date(value.year, value.month, value.day) if value.year else None


def _proto_date(value: date | None) -> Any:
    return (
        None if value is None else date_pb2.Date(year=value.year, month=value.month, day=value.day)
    )


async def _invoices(
    clients: ServiceClients,
    statuses: tuple[Any, ...],
    issued_from: date | None = None,
    issued_to: date | None = None,
) -> list[ipb.Invoice]:
    found: list[ipb.Invoice] = []
    token = ""
    while True:
        page = await clients.invoicing.SearchInvoices(
            ipb.SearchInvoicesRequest(
                page_size=PAGE,
                page_token=token,
                statuses=list(statuses),
                issue_date_from=_proto_date(issued_from),
                issue_date_to=_proto_date(issued_to),
            ),
            timeout=clients.timeout,
        )
        found.extend(page.invoices)
        token = page.next_page_token
        if not token:
            return found


async def revenue(clients: ServiceClients, start: datetime | None, end: datetime | None) -> Report:
    """Invoiced per month of issue and currency: issued invoices (not drafts or voided),
    and what credit notes took back from them."""
    first = start.date() if start else None
    # The period's end is exclusive; SearchInvoices' issue_date_to is inclusive.
    last = (end - timedelta(microseconds=1)).date() if end else None
    sums: dict[tuple[str, str], dict[str, Decimal]] = {}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for invoice in await _invoices(clients, ISSUED, first, last):
        issued = _date(invoice.issue_date)
        key = (issued.strftime("%Y-%m") if issued else "", invoice.currency_code)
        row = sums.setdefault(key, defaultdict(Decimal))
        counts[key] += 1
        for field in ("total_net", "total_tax", "total_gross", "credited_amount"):
            row[field] += _decimal(getattr(invoice, field))
    rows: list[dict[str, str | int]] = [
        {
            "month": month,
            "currency_code": currency,
            "invoices": counts[(month, currency)],
            "net": _text(sums[(month, currency)]["total_net"]),
            "tax": _text(sums[(month, currency)]["total_tax"]),
            "gross": _text(sums[(month, currency)]["total_gross"]),
            "credited": _text(sums[(month, currency)]["credited_amount"]),
        }
        for month, currency in sorted(sums)
    ]
    columns = ("month", "currency_code", "invoices", "net", "tax", "gross", "credited")
    return Report("revenue", columns, rows, start, end)


def aging_bucket(days_overdue: int) -> str:
    """0-30, 31-60, 61-90 or 90+ days past the due date; not_due before it."""
    if days_overdue <= 0:
        return "not_due"
    if days_overdue <= 30:
        return "0-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


async def receivables_aging(clients: ServiceClients, as_of: date) -> Report:
    """What is still due on open invoices, by days past the due date on ``as_of``."""
    totals: dict[str, dict[str, Decimal]] = {}
    for invoice in await _invoices(clients, UNPAID):
        due = _date(invoice.due_date)
        amount = _decimal(invoice.amount_due)
        if due is None or amount <= 0:
            continue
        row = totals.setdefault(invoice.currency_code, defaultdict(Decimal))
        row[aging_bucket((as_of - due).days)] += amount
        row["total"] += amount
    rows: list[dict[str, str | int]] = [
        {
            "currency_code": currency,
            **{bucket: _text(totals[currency][bucket]) for bucket in (*AGING_BUCKETS, "total")},
        }
        for currency in sorted(totals)
    ]
    return Report("receivables-aging", ("currency_code", *AGING_BUCKETS, "total"), rows)


def paid_on_time(due: date | None, paid_at: list[datetime], zone: ZoneInfo) -> bool:
    """Whether the last payment landed on or before the due date, both read in ``zone``.

    The due date is a day of the account's zone (DOMAIN: cycles and dates are the
    account's), so the payment's instant is turned into a day of that same zone: a card
    charged at 23:30 in Lima on the due date is on time although it is already the next
    day in UTC.
    """
    if due is None or not paid_at:
        return True
    return max(moment.astimezone(zone).date() for moment in paid_at) <= due


async def _account_zone(
    clients: ServiceClients, account_id: str, known: dict[str, ZoneInfo]
) -> ZoneInfo:
    zone = known.get(account_id)
    if zone is None:
        answer = await clients.accounts.GetAccount(
            apb.GetAccountRequest(account_id=account_id), timeout=clients.timeout
        )
        try:
            zone = ZoneInfo(answer.account.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            # accounts validates the zone on write; an old row with an unknown name
            # falls back to UTC rather than failing the whole report.
            zone = ZoneInfo("UTC")
        known[account_id] = zone
    return zone


async def payment_discipline(clients: ServiceClients, as_of: date) -> Report:
    """Per customer: issued invoices paid by their due date, paid late, overdue unpaid."""
    tally: dict[str, dict[str, int]] = {}
    zones: dict[str, ZoneInfo] = {}
    for invoice in await _invoices(clients, ISSUED):
        due = _date(invoice.due_date)
        row = tally.setdefault(invoice.customer_id, defaultdict(int))
        row["invoices"] += 1
        if invoice.status == ipb.InvoiceStatus.INVOICE_STATUS_PAID:
            details = await clients.invoicing.GetInvoice(
                ipb.GetInvoiceRequest(invoice_id=invoice.invoice_id), timeout=clients.timeout
            )
            paid = [p.record_time.ToDatetime(tzinfo=UTC) for p in details.payments]
            zone = await _account_zone(clients, invoice.account_id, zones)
            on_time = paid_on_time(due, paid, zone)
            row["paid_on_time" if on_time else "paid_late"] += 1
        elif due is not None and due < as_of:
            row["overdue"] += 1
        else:
            row["not_due"] += 1
    rows: list[dict[str, str | int]] = []
    for customer in sorted(tally):
        row = tally[customer]
        settled = row["paid_on_time"] + row["paid_late"] + row["overdue"]
        # Empty while nothing has fallen due yet: no share to speak of.
        share = Decimal(row["paid_on_time"] * 100) / settled if settled else None
        rows.append(
            {
                "customer_id": customer,
                "invoices": row["invoices"],
                "paid_on_time": row["paid_on_time"],
                "paid_late": row["paid_late"],
                "overdue": row["overdue"],
                "not_due": row["not_due"],
                "on_time_percent": "" if share is None else _text(share.quantize(Decimal("0.1"))),
            }
        )
    columns = (
        "customer_id",
        "invoices",
        "paid_on_time",
        "paid_late",
        "overdue",
        "not_due",
        "on_time_percent",
    )
    return Report("payment-discipline", columns, rows)


async def run_report(
    name: str,
    clients: ServiceClients,
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: date | None = None,
) -> Report:
    today = as_of or datetime.now(UTC).date()
    if name == "consumption":
        return await consumption(clients, start, end)
    if name == "tariff-popularity":
        return await tariff_popularity(clients)
    if name == "revenue":
        return await revenue(clients, start, end)
    if name == "receivables-aging":
        return await receivables_aging(clients, today)
    if name == "payment-discipline":
        return await payment_discipline(clients, today)
    raise ValueError(f"unknown report {name!r}; known: {', '.join(REPORTS)}")


# --- HTTP ------------------------------------------------------------------------------
class ReportOut(BaseModel):
    report: str
    period_start: str | None
    period_end: str | None
    columns: list[str]
    rows: list[dict[str, str | int]]


Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
Operator = Annotated[Principal, Depends(require("read"))]
CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def _answer(report: Report, fmt: str) -> Response:
    if fmt == "csv":
        return Response(
            report.as_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'},
        )
    return JSONResponse(report.as_json())


@router.get("/consumption", response_model=ReportOut, responses=CSV_DOC, tags=["reports"])
async def consumption_report(
    request: Request,
    principal: Operator,
    period_start: Annotated[datetime | None, Query(description="RFC 3339, inclusive")] = None,
    period_end: Annotated[datetime | None, Query(description="RFC 3339, exclusive")] = None,
    format: Format = "json",
) -> Response:
    report = await consumption(request.app.state.clients, period_start, period_end)
    return _answer(report, format)


@router.get("/tariff-popularity", response_model=ReportOut, responses=CSV_DOC, tags=["reports"])
async def tariff_popularity_report(
    request: Request, principal: Operator, format: Format = "json"
) -> Response:
    return _answer(await tariff_popularity(request.app.state.clients), format)


AsOf = Annotated[date | None, Query(description="The day to age against (default today, UTC)")]


@router.get("/revenue", response_model=ReportOut, responses=CSV_DOC, tags=["reports"])
async def revenue_report(
    request: Request,
    principal: Operator,
    period_start: Annotated[datetime | None, Query(description="RFC 3339, inclusive")] = None,
    period_end: Annotated[datetime | None, Query(description="RFC 3339, exclusive")] = None,
    format: Format = "json",
) -> Response:
    report = await revenue(request.app.state.clients, period_start, period_end)
    return _answer(report, format)


@router.get("/receivables-aging", response_model=ReportOut, responses=CSV_DOC, tags=["reports"])
async def receivables_aging_report(
    request: Request, principal: Operator, as_of: AsOf = None, format: Format = "json"
) -> Response:
    day = as_of or datetime.now(UTC).date()
    return _answer(await receivables_aging(request.app.state.clients, day), format)


@router.get("/payment-discipline", response_model=ReportOut, responses=CSV_DOC, tags=["reports"])
async def payment_discipline_report(
    request: Request, principal: Operator, as_of: AsOf = None, format: Format = "json"
) -> Response:
    day = as_of or datetime.now(UTC).date()
    return _answer(await payment_discipline(request.app.state.clients, day), format)


@pages.get("/reports", include_in_schema=False, response_class=HTMLResponse)
async def reports_page(request: Request, principal: Operator) -> HTMLResponse:
    from gateway.selfcare import render  # the page helpers live with the other pages

    clients = request.app.state.clients
    usage = await consumption(clients, None, None)
    plans = await tariff_popularity(clients)
    today = datetime.now(UTC).date()
    income = await revenue(clients, None, None)
    aging = await receivables_aging(clients, today)
    discipline = await payment_discipline(clients, today)
    usage_chart = bar_chart(
        [f"{r['service']} ({r['currency_code']})" for r in usage.rows],
        [Decimal(str(r["amount"])) for r in usage.rows],
        title="consumption",
    )
    plan_chart = bar_chart(
        [str(r["plan_code"]) for r in plans.rows],
        [Decimal(int(r["subscribers"])) for r in plans.rows],
        title="tariff popularity",
    )
    revenue_chart = bar_chart(
        [f"{r['month']} {r['currency_code']}" for r in income.rows],
        [Decimal(str(r["gross"])) for r in income.rows],
        title="revenue",
    )
    aging_chart = bar_chart(
        [f"{bucket} {r['currency_code']}" for r in aging.rows for bucket in AGING_BUCKETS],
        [Decimal(str(r[bucket])) for r in aging.rows for bucket in AGING_BUCKETS],
        title="receivables aging",
    )
    return render(
        request,
        "reports.html",
        {
            "usage": usage,
            "plans": plans,
            "revenue": income,
            "aging": aging,
            "discipline": discipline,
            "usage_chart": usage_chart,
            "plan_chart": plan_chart,
            "revenue_chart": revenue_chart,
            "aging_chart": aging_chart,
        },
    )
