"""The demo's prepaid call against the sample catalog: cut short inside a grant in every band.

The e2e test can only see the band the suite happens to run in (a Saturday run
once used 1.00 EUR up exactly at the end of a two-minute grant, so charging never
asked rating what the rest buys). These cases pin the demo's top-up and quota to
the sample catalog's prices in each band, at fixed instants.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.rating.domain import AmountBasis, RatingEngine, UsageEvent
from services.rating.service_layer.catalog_document import read_catalog
from suite.demo import (
    CALL_DESTINATION,
    CALL_MAX_UPDATES,
    CALL_QUOTA_SECONDS,
    CALL_TAX_REGION,
    CALL_TIME_ZONE,
    CALL_TOP_UP,
    PLAN_CODE,
    SAMPLE_CATALOG,
)


def _engine(path: Path) -> RatingEngine:
    reading = read_catalog(path.read_text(encoding="utf-8"))
    assert reading.catalog is not None, reading.problems
    return RatingEngine(reading.catalog)


ENGINE = _engine(SAMPLE_CATALOG)


def _seconds_bought(local_start: str) -> int:
    """What rating's UnitsForAmount answers for the whole top-up at that local time."""
    start = datetime.fromisoformat(local_start).replace(tzinfo=ZoneInfo(CALL_TIME_ZONE))
    request = UsageEvent(
        record_id="demo-call",
        account_id="demo-account",
        plan_code=PLAN_CODE,
        service="voice",
        start=start,
        quantity=(CALL_MAX_UPDATES + 1) * CALL_QUOTA_SECONDS,
        destination=CALL_DESTINATION,
        time_zone=CALL_TIME_ZONE,
        tax_region=CALL_TAX_REGION,
    )
    return ENGINE.units_for_amount(request, CALL_TOP_UP.amount, AmountBasis.GROSS).units


@pytest.mark.parametrize(
    ("band", "local_start", "seconds"),
    [
        ("peak", "2026-12-07 10:00", 7 * 60),
        ("offpeak", "2026-12-07 20:00", 15 * 60),
        ("weekend", "2026-12-05 10:00", 26 * 60),
        ("holiday", "2026-12-25 10:00", 26 * 60),
    ],
)
def test_the_top_up_runs_out_inside_a_grant(band: str, local_start: str, seconds: int) -> None:
    bought = _seconds_bought(local_start)
    assert bought == seconds, band
    whole_grants, rest = divmod(bought, CALL_QUOTA_SECONDS)
    # At least the Initial's grant is used in full, so the call is updated at least once...
    assert whole_grants >= 1
    # ...the credit ends inside the next grant, which charging sizes with UnitsForAmount...
    assert 0 < rest < CALL_QUOTA_SECONDS
    # ...and the story reaches that grant before it gives up.
    assert whole_grants <= CALL_MAX_UPDATES
