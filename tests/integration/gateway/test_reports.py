"""Operator reports against figures computed by hand on a small data set.

Three customers: Ann and Cat on ``basic`` (voice 0.10 per started minute, SMS 0.10),
Ben on ``plus`` (0.05 and 0.05); VAT 0% so gross is net. Usage:
- Ann: 3 SMS (0.30) and a 90 s call (2 started minutes: 0.20);
- Ben: 2 SMS (0.10) and a 30 s call (1 minute: 0.05);
- Cat: nothing.
So consumption: sms 5 records, 5 events, 0.40 EUR; voice 2 records, 120 s, 0.25 EUR.
Tariff popularity: basic 2 (66.7 %), plus 1 (33.3 %).
Invoices (net = gross, VAT 0%, due 14 days after issue): Ann 10.00 paid in full today,
Ben 20.00 unpaid, Cat 5.00 with 2.00 paid. Revenue this month: 3 invoices, 35 gross.
Receivables (23.00) are all not yet due today, and 31-60 days late 45 days after the
due date. Payment discipline a day after the due date: Ann on time (100 %), Ben and
Cat overdue (0 %).
The same figures come from the JSON and CSV endpoints, the page, and ``reckon report``,
and they equal the sums of what rating and accounts hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from suite.state import SuiteState
from suite.supervisor import CODE_ROOT
from tests.integration.gateway.conftest import (
    Gateway,
    import_usage,
    new_customer,
    open_invoice,
    record_payment,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CONSUMPTION = [
    {
        "service": "sms",
        "unit": "event",
        "currency_code": "EUR",
        "records": 5,
        "quantity": 5,
        "amount": "0.4",
    },
    {
        "service": "voice",
        "unit": "second",
        "currency_code": "EUR",
        "records": 2,
        "quantity": 120,
        "amount": "0.25",
    },
]
POPULARITY = [
    {"plan_code": "basic", "subscribers": 2, "share_percent": "66.7"},
    {"plan_code": "plus", "subscribers": 1, "share_percent": "33.3"},
]


@pytest.fixture(scope="module")
def data(gateway: Gateway, suite: SuiteState) -> dict[str, Any]:
    admin = gateway.key("admin")
    ann = new_customer(gateway, admin, "Ann", plan="basic")
    ben = new_customer(gateway, admin, "Ben", plan="plus")
    cat = new_customer(gateway, admin, "Cat", plan="basic")
    a, b = ann.account_id, ben.account_id
    import_usage(
        suite,
        [
            ("ann-sms-1", a, "sms", "", 1),
            ("ann-sms-2", a, "sms", "", 1),
            ("ann-sms-3", a, "sms", "", 1),
            ("ann-call", a, "voice", "0205550101", 90),
            ("ben-sms-1", b, "sms", "", 1),
            ("ben-sms-2", b, "sms", "", 1),
            ("ben-call", b, "voice", "0205550102", 30),
        ],
    )
    invoices = {
        "ann": open_invoice(suite, a, "10.00"),
        "ben": open_invoice(suite, b, "20.00"),
        "cat": open_invoice(suite, cat.account_id, "5.00"),
    }
    record_payment(suite, invoices["ann"].invoice_id, "10.00")
    record_payment(suite, invoices["cat"].invoice_id, "2.00")
    due = invoices["ben"].due_date
    return {
        "admin": admin,
        "reader": gateway.key("read"),
        "due": date(due.year, due.month, due.day),
        "issued": invoices["ben"].issue_date,
        "customers": {"ann": ann.customer_id, "ben": ben.customer_id, "cat": cat.customer_id},
    }


def test_revenue_per_month_is_the_hand_computed_figure(
    gateway: Gateway, data: dict[str, Any]
) -> None:
    answer = gateway.http.get("/v1/reports/revenue", headers=data["reader"]).json()
    month = f"{data['issued'].year:04d}-{data['issued'].month:02d}"
    assert answer["rows"] == [
        {
            "month": month,
            "currency_code": "EUR",
            "invoices": 3,
            "net": "35",
            "tax": "0",
            "gross": "35",
            "credited": "0",
        }
    ]


def test_receivables_age_by_days_past_due(gateway: Gateway, data: dict[str, Any]) -> None:
    def aging(as_of: date) -> Any:
        return gateway.http.get(
            "/v1/reports/receivables-aging",
            params={"as_of": as_of.isoformat()},
            headers=data["reader"],
        ).json()["rows"]

    zero = {"0-30": "0", "31-60": "0", "61-90": "0", "90+": "0"}
    assert aging(data["due"]) == [{"currency_code": "EUR", "not_due": "23", **zero, "total": "23"}]
    late = aging(data["due"] + timedelta(days=45))
    assert late == [
        {"currency_code": "EUR", "not_due": "0", **{**zero, "31-60": "23"}, "total": "23"}
    ]
    assert aging(data["due"] + timedelta(days=91))[0]["90+"] == "23"


def test_payment_discipline_per_customer(gateway: Gateway, data: dict[str, Any]) -> None:
    answer = gateway.http.get(
        "/v1/reports/payment-discipline",
        params={"as_of": (data["due"] + timedelta(days=1)).isoformat()},
        headers=data["reader"],
    ).json()
    rows = {r["customer_id"]: r for r in answer["rows"]}
    ids = data["customers"]
    assert rows[ids["ann"]]["paid_on_time"] == 1
    assert rows[ids["ann"]]["on_time_percent"] == "100"
    assert rows[ids["ben"]]["overdue"] == 1
    assert rows[ids["cat"]]["overdue"] == 1
    assert rows[ids["cat"]]["on_time_percent"] == "0"
    before = gateway.http.get(
        "/v1/reports/payment-discipline",
        params={"as_of": data["due"].isoformat()},
        headers=data["reader"],
    ).json()
    ben = next(r for r in before["rows"] if r["customer_id"] == ids["ben"])
    assert (ben["not_due"], ben["on_time_percent"]) == (1, "")  # nothing has fallen due


def test_consumption_by_service_is_the_hand_computed_figure(
    gateway: Gateway, data: dict[str, Any]
) -> None:
    answer = gateway.http.get("/v1/reports/consumption", headers=data["reader"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == CONSUMPTION


def test_consumption_equals_the_sum_of_what_rating_holds(
    gateway: Gateway, data: dict[str, Any]
) -> None:
    """Summed independently from the rated lines the API lists per account."""
    accounts = gateway.http.get("/v1/accounts", params={"page_size": 100}, headers=data["admin"])
    totals: dict[str, Decimal] = {}
    for account in accounts.json()["accounts"]:
        usage = gateway.http.get(
            f"/v1/accounts/{account['account_id']}/usage",
            params={"page_size": 1000},
            headers=data["admin"],
        ).json()
        for line in usage["rated_usage"]:
            totals[line["service"]] = totals.get(line["service"], Decimal(0)) + Decimal(
                line["amount"]["amount"]
            )
    assert {r["service"]: Decimal(str(r["amount"])) for r in CONSUMPTION} == totals


def test_a_period_selects_the_usage_inside_it(gateway: Gateway, data: dict[str, Any]) -> None:
    answer = gateway.http.get(
        "/v1/reports/consumption",
        params={"period_start": "2020-01-01T00:00:00Z", "period_end": "2020-02-01T00:00:00Z"},
        headers=data["reader"],
    )
    assert answer.json()["rows"] == []


def test_tariff_popularity_is_the_hand_computed_figure(
    gateway: Gateway, data: dict[str, Any]
) -> None:
    answer = gateway.http.get("/v1/reports/tariff-popularity", headers=data["reader"])
    assert answer.json()["rows"] == POPULARITY


def test_reports_as_csv(gateway: Gateway, data: dict[str, Any]) -> None:
    answer = gateway.http.get(
        "/v1/reports/tariff-popularity", params={"format": "csv"}, headers=data["reader"]
    )
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text == "plan_code,subscribers,share_percent\nbasic,2,66.7\nplus,1,33.3\n"
    usage = gateway.http.get(
        "/v1/reports/consumption", params={"format": "csv"}, headers=data["reader"]
    )
    assert usage.text.splitlines() == [
        "service,unit,currency_code,records,quantity,amount",
        "sms,event,EUR,5,5,0.4",
        "voice,second,EUR,2,120,0.25",
    ]


def test_the_report_page_shows_the_figures_and_charts(
    gateway: Gateway, data: dict[str, Any]
) -> None:
    page = gateway.http.get("/reports", headers=data["reader"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 4
    assert "66.7 %" in page.text
    assert "0.25 EUR" in page.text


def test_reckon_report_prints_the_same_figures(suite: SuiteState, data: dict[str, Any]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli", "report", "consumption", "--format", "csv"],
        cwd=CODE_ROOT,
        env={**os.environ, "RECKON_DATA_DIR": suite.data_dir, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert rows == ["sms,event,EUR,5,5,0.4", "voice,second,EUR,2,120,0.25"]


def test_an_operator_logs_in_to_the_report_pages(gateway: Gateway, data: dict[str, Any]) -> None:
    gateway.store.add_login(
        "ops@example.com", "operator-password", customer_id=None, scopes=frozenset({"read"})
    )
    gateway.http.cookies.clear()
    assert gateway.http.get("/reports").status_code == 401  # the login form
    login = gateway.http.post(
        "/selfcare/login",
        data={"login": "ops@example.com", "password": "operator-password"},
        follow_redirects=False,
    )
    assert login.status_code == 303
    assert login.headers["location"] == "/reports"
    page = gateway.http.get("/reports?lang=fr")
    assert page.status_code == 200
    assert "Popularité des forfaits" in page.text
    assert gateway.http.get("/selfcare/").status_code == 403  # not a customer login
    gateway.http.cookies.clear()
