"""The catalog document: what applies cleanly, and problems named by their path."""

from __future__ import annotations

import json
from copy import deepcopy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.rating.domain import (
    GraduatedTiers,
    InvalidCatalog,
    TimeTariff,
    check_catalog,
    load_destination_rows,
    parse_catalog,
)

from .support import catalog_document, flat_voice_rate, voice_rate

D = Decimal


def _problems(document: dict[str, Any]) -> dict[str, str]:
    return {v.field: v.description for v in check_catalog(document)}


def _first_rate(document: dict[str, Any]) -> dict[str, Any]:
    rate: dict[str, Any] = document["plans"][0]["versions"][0]["rates"][0]
    return rate


def test_a_valid_document_builds_the_catalog() -> None:
    catalog = parse_catalog(catalog_document([voice_rate(first=30, step=6)]))
    [plan] = catalog.plans
    [rate] = plan.versions[0].rates
    assert (plan.code, plan.currency, rate.destination) == ("conf-basic", "EUR", "NL")
    assert isinstance(rate.pricing, TimeTariff)
    # 0.10 a minute becomes 0.05 per 30 s and 0.01 per 6 s.
    peak = rate.pricing.prices["peak"]
    assert (peak.first_price, peak.next_price) == (D("0.05"), D("0.01"))


def test_json_round_trip_with_exact_decimals() -> None:
    text = json.dumps(catalog_document([flat_voice_rate("0.10")]))
    assert parse_catalog(json.loads(text, parse_float=Decimal)).plan("conf-basic") is not None


def test_yaml_style_values_are_accepted() -> None:
    # YAML parsers give dates, datetimes and 08:00 as the number 480 (YAML 1.1 sexagesimal).
    document = catalog_document([flat_voice_rate("0.10")])
    document["time_bands"][0]["bands"][0]["from"] = 480
    document["calendars"][0]["holidays"][0]["date"] = date(2026, 12, 25)
    document["plans"][0]["versions"][0]["valid_from"] = datetime(2026, 1, 1, tzinfo=UTC)
    assert check_catalog(document) == []


def test_every_problem_is_reported_with_its_path() -> None:
    document = catalog_document([voice_rate(), voice_rate(rate_id="b", destination="Mars")])
    rate = _first_rate(document)
    rate["first_increment"] = 0
    rate["next_incremnt"] = 6  # typo
    document["plans"][0]["currency"] = "EURO"
    document["products"].append({"code": "fax", "unit": "page"})
    problems = _problems(document)
    assert problems == {
        "plans[0].versions[0].rates[0].first_increment": "must be at least 1",
        "plans[0].versions[0].rates[0].next_incremnt": problems[
            "plans[0].versions[0].rates[0].next_incremnt"
        ],
        "plans[0].currency": "'EURO' is not an ISO 4217 currency",
        "products[5].unit": "must be one of second, byte, event, unit",
    }
    assert problems["plans[0].versions[0].rates[0].next_incremnt"].startswith("unknown field")


def test_references_are_checked_once_the_fields_are_valid() -> None:
    document = catalog_document([voice_rate(), voice_rate(rate_id="b", destination="Mars")])
    document["plans"][0]["versions"][0]["discounts"] = ["NOPE"]
    document["plans"][0]["versions"][0]["time_bands"] = "weekly"
    problems = _problems(document)
    assert problems["plans[0].versions[0].rates[1].destination"] == "no destination 'Mars'"
    assert problems["plans[0].versions[0].discounts[0]"] == "no discount 'NOPE'"
    assert problems["plans[0].versions[0].time_bands"] == "no time band schedule 'weekly'"


def test_floats_are_refused_because_they_are_not_exact() -> None:
    document = catalog_document([flat_voice_rate("0.10")])
    _first_rate(document)["connection_fee"] = 0.05
    problems = _problems(document)
    assert "floats are not exact" in problems["plans[0].versions[0].rates[0].connection_fee"]


def test_per_minute_price_that_is_not_exact_per_increment_is_a_price_per_minute() -> None:
    # 0.000000007 a minute for 1 s is 0.000000000116...: not a per-increment price, so the
    # rate is priced per 60 s rate unit, exactly (ADR 0041; it used to be refused).
    document = catalog_document([flat_voice_rate("0.000000007", first=1, step=1)])
    assert _problems(document) == {}
    rate = _first_rate(document)
    pricing = parse_catalog(document).plans[0].versions[0].rates[0].pricing
    assert getattr(pricing, "rate_unit", None) == 60, rate


def test_rate_must_price_every_band_its_schedule_produces() -> None:
    rate = voice_rate()
    rate["per_minute"] = {"peak": "0.10"}
    problems = _problems(catalog_document([rate]))
    assert problems["plans[0].versions[0].rates[0].prices"].startswith(
        "no price for time band(s) offpeak, weekend"
    )


def test_star_price_covers_every_band() -> None:
    rate = voice_rate()
    rate["per_minute"] = {"peak": "0.10", "*": "0.04"}
    assert check_catalog(catalog_document([rate])) == []


def test_overlapping_versions_are_refused() -> None:
    second = {
        "version": 2,
        "valid_from": "2026-06-01T00:00:00Z",
        "rates": [deepcopy(flat_voice_rate("0.08"))],
        "time_bands": "standard",
    }
    document = catalog_document([flat_voice_rate("0.10")], extra_versions=[second])
    problems = _problems(document)
    assert "overlaps version 1" in problems["plans[0].versions[1].valid_from"]


def test_naive_datetime_is_refused() -> None:
    document = catalog_document([flat_voice_rate("0.10")])
    document["plans"][0]["versions"][0]["valid_from"] = "2026-01-01T00:00:00"
    assert "UTC offset" in _problems(document)["plans[0].versions[0].valid_from"]


def test_package_needs_exactly_one_owner_and_a_known_plan() -> None:
    packages = [
        {
            "code": "p",
            "plan": "other",
            "customer": "c",
            "group": "g",
            "versions": [{"version": 1, "valid_from": "2026-01-01"}],
        }
    ]
    problems = _problems(catalog_document([flat_voice_rate("0.10")], packages=packages))
    assert problems["packages[0]"] == "set exactly one of 'customer' and 'group'"


def test_tiers_must_increase() -> None:
    rate = {
        "id": "sms",
        "service": "sms",
        "model": {
            "kind": "graduated",
            "tiers": [
                {"up_to": 100, "unit_price": "0.1"},
                {"up_to": 50, "unit_price": "0.05"},
                {"unit_price": "0.01"},
            ],
        },
    }
    problems = _problems(catalog_document([rate]))
    assert problems == {
        "plans[0].versions[0].rates[0].model.tiers[1].up_to": "must be above the previous "
        "tier's 100"
    }


def test_usage_models_are_built() -> None:
    rate = {
        "id": "data",
        "service": "data",
        "model": {
            "kind": "graduated",
            "unit_size": 1_000_000,
            "tiers": [{"up_to": 1000, "unit_price": "0"}, {"unit_price": "0.01", "flat_fee": 1}],
        },
    }
    catalog = parse_catalog(catalog_document([rate]))
    pricing = catalog.plans[0].versions[0].rates[0].pricing
    assert isinstance(pricing, GraduatedTiers)
    assert pricing.tiers[1].flat_fee == D("1")


def test_time_tariff_on_a_product_not_counted_in_seconds_is_refused() -> None:
    rate = flat_voice_rate("0.10")
    rate["service"] = "sms"
    problems = _problems(catalog_document([rate]))
    assert "needs a product counted in seconds" in problems["plans[0].versions[0].rates[0].service"]


def test_not_a_mapping_at_all() -> None:
    with pytest.raises(InvalidCatalog) as raised:
        parse_catalog({"plans": "everything"})
    assert raised.value.violations[0].field == "plans"
    assert raised.value.reason == "INVALID_CATALOG"


def test_csv_destinations_are_merged_with_the_document() -> None:
    table = load_destination_rows([["49", "Germany"], ["4915", "Germany Mobile"]])
    document = catalog_document([flat_voice_rate("0.10", rate_id="de", destination="Germany")])
    catalog = parse_catalog(document, destinations=table)
    assert catalog.destinations.match("4930123456") == ("49", "Germany")
    assert catalog.destinations.match("31612345678") == ("316", "NL Mobile")


def test_a_document_that_is_not_a_mapping() -> None:
    assert [(v.field, v.description) for v in check_catalog([])] == [  # type: ignore[arg-type]
        ("document", "must be a mapping, got a list")
    ]


def test_band_days_by_name_and_group() -> None:
    document = catalog_document([flat_voice_rate("0.10")])
    document["time_bands"][0]["bands"][0]["days"] = ["Monday", "tue", "mo"]
    problems = _problems(document)
    assert problems == {
        "time_bands[0].bands[0].days[2]": "'mo' is not a day (mon..sun, weekdays, weekend, all)"
    }
