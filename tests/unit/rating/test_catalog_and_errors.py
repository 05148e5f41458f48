"""Plan versions by event time, per-customer and per-group packages, and refusal reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.common.errors import ErrorKind, ReckonError
from services.rating.domain import RatingEngine, parse_catalog

from .support import MONDAY_MORNING, call, catalog_document, engine_for, event, flat_voice_rate

D = Decimal


def _versioned() -> RatingEngine:
    second = {
        "version": 2,
        "valid_from": "2026-07-01T00:00:00Z",
        "time_bands": "standard",
        "rates": [flat_voice_rate("0.08")],
    }
    return engine_for(
        [flat_voice_rate("0.10")], valid_to="2026-07-01T00:00:00Z", extra_versions=[second]
    )


def test_event_is_rated_with_the_version_in_force_at_its_time() -> None:
    engine = _versioned()
    last_old = engine.rate(event(datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC), 60))
    first_new = engine.rate(event(datetime(2026, 7, 1, tzinfo=UTC), 60))
    assert (last_old.plan_version, last_old.gross) == (1, D("0.10"))
    assert (first_new.plan_version, first_new.gross) == (2, D("0.08"))


def test_a_call_that_starts_before_a_price_change_keeps_its_starting_price() -> None:
    engine = _versioned()
    charge = engine.rate(event(datetime(2026, 6, 30, 23, 59, tzinfo=UTC), 600))
    assert (charge.plan_version, charge.gross) == (1, D("1.00"))


def test_event_before_the_first_version_is_refused() -> None:
    with pytest.raises(ReckonError) as raised:
        _versioned().rate(event(datetime(2025, 12, 31, 23, tzinfo=UTC), 60))
    assert raised.value.reason == "PLAN_NOT_IN_FORCE"


def _with_packages() -> RatingEngine:
    packages = [
        {
            "code": "acme-deal",
            "plan": "conf-basic",
            "customer": "acme",
            "versions": [
                {
                    "version": 1,
                    "valid_from": "2026-02-01T00:00:00Z",
                    "rates": [flat_voice_rate("0.05", rate_id="acme-nl")],
                }
            ],
        },
        {
            "code": "reseller-deal",
            "plan": "conf-basic",
            "group": "resellers",
            "versions": [
                {
                    "version": 1,
                    "valid_from": "2026-01-01T00:00:00Z",
                    "rates": [flat_voice_rate("0.07", rate_id="reseller-nl")],
                }
            ],
        },
    ]
    rates = [
        flat_voice_rate("0.10"),
        flat_voice_rate("0.20", rate_id="nl-mobile", destination="NL Mobile"),
    ]
    return engine_for(rates, packages=packages)


def test_customer_package_overrides_the_plan_rate() -> None:
    charge = call(_with_packages(), MONDAY_MORNING, 60, customer_id="acme")
    assert (charge.package_code, charge.package_version) == ("acme-deal", 1)
    assert (charge.rate_id, charge.gross) == ("acme-nl", D("0.05"))


def test_group_package_applies_to_members_and_the_customer_package_wins() -> None:
    engine = _with_packages()
    member = call(engine, MONDAY_MORNING, 60, group="resellers")
    both = call(engine, MONDAY_MORNING, 60, customer_id="acme", group="resellers")
    stranger = call(engine, MONDAY_MORNING, 60, customer_id="other")
    assert (member.package_code, member.gross) == ("reseller-deal", D("0.07"))
    assert (both.package_code, both.gross) == ("acme-deal", D("0.05"))
    assert (stranger.package_code, stranger.gross) == (None, D("0.10"))


def test_package_is_versioned_too() -> None:
    charge = call(_with_packages(), "2026-01-15 10:00", 60, customer_id="acme")
    assert (charge.package_code, charge.gross) == (None, D("0.10"))


def test_a_longer_plan_prefix_beats_a_shorter_package_prefix() -> None:
    # The package prices NL (31); the plan prices NL Mobile (316) more precisely.
    charge = call(
        _with_packages(), MONDAY_MORNING, 60, customer_id="acme", destination="0612345678"
    )
    assert (charge.destination, charge.matched_prefix, charge.gross) == (
        "NL Mobile",
        "316",
        D("0.20"),
    )


def test_breakdown_names_plan_rate_destination_and_prefix() -> None:
    charge = call(_with_packages(), MONDAY_MORNING, 60, destination="+31 20 555 0000")
    assert (charge.plan_code, charge.plan_version, charge.rate_id) == ("conf-basic", 1, "nl")
    assert (charge.destination, charge.matched_prefix, charge.currency) == ("NL", "31", "EUR")


def test_rate_without_destination_prices_any_number() -> None:
    engine = engine_for(
        [flat_voice_rate("0.30", rate_id="world", destination=None), flat_voice_rate("0.10")]
    )
    uk = call(engine, MONDAY_MORNING, 60, destination="+44 20 7946 0958")
    nl = call(engine, MONDAY_MORNING, 60)
    assert (uk.rate_id, uk.destination, uk.matched_prefix, uk.gross) == (
        "world",
        None,
        None,
        D("0.30"),
    )
    assert nl.rate_id == "nl"


@pytest.mark.parametrize(
    ("change", "reason", "kind"),
    [
        ({"destination": "+44 20 7946 0958"}, "NO_TARIFF", ErrorKind.NOT_FOUND),
        ({"service": "sms"}, "NO_TARIFF", ErrorKind.NOT_FOUND),
        ({"plan_code": "nope"}, "UNKNOWN_PLAN", ErrorKind.NOT_FOUND),
        ({"tax_region": "XX"}, "UNKNOWN_TAX_REGION", ErrorKind.NOT_FOUND),
        ({"destination": "anonymous"}, "INVALID_NUMBER", ErrorKind.INVALID_ARGUMENT),
        ({"time_zone": "Mars/Olympus"}, "UNKNOWN_TIME_ZONE", ErrorKind.INVALID_ARGUMENT),
        ({"time_zone": "../../etc/passwd"}, "UNKNOWN_TIME_ZONE", ErrorKind.INVALID_ARGUMENT),
        ({"quantity": -1}, "INVALID_EVENT", ErrorKind.INVALID_ARGUMENT),
        ({"quantity": 10**9}, "INVALID_EVENT", ErrorKind.INVALID_ARGUMENT),
        ({"start": datetime(2026, 3, 2, 10)}, "INVALID_EVENT", ErrorKind.INVALID_ARGUMENT),
        ({"start": datetime(2500, 1, 1, tzinfo=UTC)}, "INVALID_EVENT", ErrorKind.INVALID_ARGUMENT),
    ],
)
def test_refusals_carry_a_stable_reason(
    change: dict[str, Any], reason: str, kind: ErrorKind
) -> None:
    engine = engine_for([flat_voice_rate("0.10")])
    record = event(datetime(2026, 3, 2, 9, tzinfo=UTC), 60)
    for name, value in change.items():
        setattr(record, name, value)
    with pytest.raises(ReckonError) as raised:
        engine.rate(record)
    assert (raised.value.reason, raised.value.kind) == (reason, kind)


def test_plan_codes_are_listed_for_subscriptions() -> None:
    catalog = parse_catalog(catalog_document([flat_voice_rate("0.10")]))
    assert catalog.plan_codes() == frozenset({"conf-basic"})
    assert RatingEngine(catalog).has_plan("conf-basic")
