"""Operator reports against figures computed by hand on a small data set.

Three customers: Ann and Cat on ``basic`` (voice 0.10 per started minute, SMS 0.10),
Ben on ``plus`` (0.05 and 0.05); VAT 0% so gross is net. Usage:
- Ann: 3 SMS (0.30) and a 90 s call (2 started minutes: 0.20);
- Ben: 2 SMS (0.10) and a 30 s call (1 minute: 0.05);
- Cat: nothing.
So consumption: sms 5 records, 5 events, 0.40 EUR; voice 2 records, 120 s, 0.25 EUR.
Tariff popularity: basic 2 (66.7 %), plus 1 (33.3 %).
The same figures come from the JSON and CSV endpoints, the page, and ``reckon report``,
and they equal the sums of what rating and accounts hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from suite.state import SuiteState
from suite.supervisor import CODE_ROOT
from tests.integration.gateway.conftest import Gateway, import_usage, new_customer

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
    new_customer(gateway, admin, "Cat", plan="basic")
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
    return {"admin": admin, "reader": gateway.key("read")}


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
    assert page.text.count("<svg") == 2
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
