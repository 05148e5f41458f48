"""Operator reports (ANA-1) computed from what the services hold, never from a copy.

- ``consumption``: rated usage (rating's current results) in a period, per service
  and currency: records, quantity per unit, gross amount;
- ``tariff-popularity``: active subscriptions per plan (accounts), with the share.

The billing reports (payment discipline, revenue per period, receivables aging) need
invoicing and payments and are added when those land. Each report is JSON or CSV
(``?format=csv``) under ``/v1/reports/``, a page with charts at ``/reports``, and
``reckon report NAME`` in the terminal (same functions).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from google.protobuf import timestamp_pb2
from pydantic import BaseModel

from gateway.auth import Principal, require
from gateway.charts import bar_chart
from gateway.clients import ServiceClients
from gateway.problems import openapi_problem_responses
from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.rating.v1 import rating_pb2 as rpb

router = APIRouter(prefix="/v1/reports", responses=openapi_problem_responses(400, 401, 403, 429))
pages = APIRouter()
REPORTS = ("consumption", "tariff-popularity")
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


async def run_report(
    name: str, clients: ServiceClients, start: datetime | None = None, end: datetime | None = None
) -> Report:
    if name == "consumption":
        return await consumption(clients, start, end)
    if name == "tariff-popularity":
        return await tariff_popularity(clients)
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


@pages.get("/reports", include_in_schema=False, response_class=HTMLResponse)
async def reports_page(request: Request, principal: Operator) -> HTMLResponse:
    from gateway.selfcare import render  # the page helpers live with the other pages

    clients = request.app.state.clients
    usage = await consumption(clients, None, None)
    plans = await tariff_popularity(clients)
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
    return render(
        request,
        "reports.html",
        {"usage": usage, "plans": plans, "usage_chart": usage_chart, "plan_chart": plan_chart},
    )
