"""Catalog documents and events for the rating tests, written the way an operator would.

Every test builds its catalog from a document (the same dicts ``reckon catalog
apply`` reads), so the worked examples double as examples of the document.
The standard week: peak Mon-Fri 08:00-18:00, weekend Sat-Sun, off-peak
otherwise, Christmas priced as weekend, in the account's zone
(Europe/Amsterdam unless a test says otherwise).
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from services.rating.domain import RatedCharge, RatingEngine, UsageEvent, parse_catalog

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
PLAN = "conf-basic"

STANDARD_WEEK: dict[str, Any] = {
    "code": "standard",
    "default_band": "offpeak",
    "calendar": "nl",
    "bands": [
        {"name": "peak", "days": ["weekdays"], "from": "08:00", "to": "18:00"},
        {"name": "weekend", "days": ["weekend"], "from": "00:00", "to": "24:00"},
    ],
}


def voice_rate(
    rate_id: str = "nl",
    destination: str | None = "NL",
    *,
    first: int = 60,
    step: int = 60,
    peak: str = "0.10",
    offpeak: str = "0.04",
    weekend: str | None = None,
    connection: str = "0",
    **extra: Any,
) -> dict[str, Any]:
    """A voice rate priced per minute in each band (the document converts to increments)."""
    per_minute = {"peak": peak, "offpeak": offpeak, "weekend": weekend or offpeak}
    rate: dict[str, Any] = {
        "id": rate_id,
        "service": "voice",
        "first_increment": first,
        "next_increment": step,
        "connection_fee": connection,
        "per_minute": per_minute,
        **extra,
    }
    if destination is not None:
        rate["destination"] = destination
    return rate


def flat_voice_rate(minute: str, **extra: Any) -> dict[str, Any]:
    """One price per minute in every band."""
    return voice_rate(peak=minute, offpeak=minute, weekend=minute, **extra)


def catalog_document(
    rates: list[dict[str, Any]],
    *,
    taxes: list[dict[str, Any]] | None = None,
    tax_rounding: str = "half_up",
    version_extra: dict[str, Any] | None = None,
    discounts: list[dict[str, Any]] | None = None,
    packages: list[dict[str, Any]] | None = None,
    extra_versions: list[dict[str, Any]] | None = None,
    valid_to: str | None = None,
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "version": 1,
        "valid_from": "2026-01-01T00:00:00Z",
        "time_bands": "standard",
        "rates": rates,
        **(version_extra or {}),
    }
    if valid_to:
        version["valid_to"] = valid_to
    return {
        "numbering": {"country_code": "31"},
        "products": [
            {"code": "voice", "unit": "second"},
            {"code": "sms", "unit": "event"},
            {"code": "data", "unit": "byte"},
            {"code": "payment", "unit": "unit"},
            {"code": "subscription", "unit": "unit"},
        ],
        "destinations": [
            {"name": "NL", "prefixes": ["31"]},
            {"name": "NL Mobile", "prefixes": ["316"]},
            {"name": "UK", "prefixes": ["44"]},
        ],
        "calendars": [{"code": "nl", "holidays": [{"date": "2026-12-25", "band": "weekend"}]}],
        "time_bands": [deepcopy(STANDARD_WEEK)],
        "tax_regions": [
            {"code": "EXEMPT"},
            {"code": "NL", "rounding": tax_rounding, "taxes": taxes or []},
        ],
        "discounts": discounts or [],
        "referral_rewards": [{"code": "REFER", "points": 500}],
        "plans": [
            {
                "code": PLAN,
                "currency": "EUR",
                "versions": [version, *(extra_versions or [])],
            }
        ],
        "packages": packages or [],
    }


def engine_for(rates: list[dict[str, Any]], **options: Any) -> RatingEngine:
    return RatingEngine(parse_catalog(catalog_document(rates, **options)))


def local(text: str, zone: ZoneInfo = AMSTERDAM) -> datetime:
    """An instant from an Amsterdam wall-clock time, e.g. ``local("2026-03-02 17:58")``."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def event(
    start: datetime,
    quantity: int,
    *,
    service: str = "voice",
    destination: str = "+31 20 123 4567",
    region: str = "EXEMPT",
    zone: str = "Europe/Amsterdam",
    **extra: Any,
) -> UsageEvent:
    return UsageEvent(
        record_id="cdr-1",
        account_id="acct-1",
        plan_code=PLAN,
        service=service,
        start=start,
        quantity=quantity,
        destination=destination,
        time_zone=zone,
        tax_region=region,
        **extra,
    )


def call(engine: RatingEngine, start: str, seconds: int, **extra: Any) -> RatedCharge:
    """Rate a voice call starting at an Amsterdam wall-clock time."""
    return engine.rate(event(local(start), seconds, **extra))


def cost(engine: RatingEngine, start: str, seconds: int, **extra: Any) -> Decimal:
    return call(engine, start, seconds, **extra).gross


MONDAY_MORNING = "2026-03-02 10:00"  # peak, well away from any boundary
