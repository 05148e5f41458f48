"""Charging prices money-priced services through the rating service (RAT-8).

Both services run in-process: rating on a SQLite file of its own with a small
catalog applied through its API and the account fed to its account view the way
accounts' events do; charging on each database kind, wired by ``RATING_ADDR``
(no pricing passed in), as the suite runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.charging.adapters.rating_pricing import PricingUnavailable, RatingPricing
from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RatingGroupRequest, RequestType, ResultCode
from services.charging.domain.units import Quantity
from services.common.clock import ManualClock
from services.rating.entrypoints.main import RunningRating
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    START,
    VOICE,
    ccr,
    charging_app,
    eur,
    ledger_totals,
    live_totals,
    new_account,
    running_rating,
    seconds,
    send,
)
from tests.integration.rating.conftest import add_account

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE

# 0.10 EUR per started minute to the Netherlands plus 20% VAT on top: charging debits
# the gross, 0.12 a minute (not the 0.10 of charging's in-memory test tariffs).
CATALOG = """
products: [{code: voice, unit: second}]
destinations: [{name: NL, prefixes: ["31"]}]
tax_regions:
  - {code: NL, name: NL, rounding: half_up,
     taxes: [{code: VAT, name: VAT 20%, percent: "20", inclusive: false}]}
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {id: nl, service: voice, destination: NL, first_increment: 60,
              next_increment: 60, prices: {"*": {first: "0.10", next: "0.10"}}}
"""
NL = "31201234567"


def rg(
    group: int,
    requested: Quantity | None = None,
    used: Quantity | None = None,
    *,
    dest: str = NL,
) -> RatingGroupRequest:
    return RatingGroupRequest(group, requested, used, dest)


@pytest.fixture
async def rating(redis_server: EmbeddedRedis, tmp_path: Path) -> AsyncIterator[RunningRating]:
    async with running_rating(redis_server.url, tmp_path, CATALOG) as running:
        add_account(running, "acc-r1")
        yield running


@pytest.fixture
async def app(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    rating: RunningRating,
) -> AsyncIterator[ChargingApp]:
    async with charging_app(
        database,
        redis_client,
        redis_server.url,
        clock=ManualClock(START),
        in_memory_pricing=False,
        rating_addr=rating.address,
    ) as app:
        yield app


async def test_a_voice_call_is_priced_by_rating(app: ChargingApp) -> None:
    assert isinstance(app.pricing, RatingPricing)
    await new_account(app, "acc-r1", balance="1.00")
    # Rating's quote for the 60 s asked: one started minute, 0.10 + 0.02 VAT.
    assert await app.pricing.price("acc-r1", "voice", NL, 60, START) == eur("0.12")

    first = await send(app, ccr("r1", INITIAL, 0, "acc-r1", rg(VOICE, seconds(60), dest=NL)))
    assert first.result is ResultCode.SUCCESS
    assert first.rating_groups[0].granted == seconds(60)
    assert await live_totals(app, "acc-r1") == {"main-EUR": (880_000, 120_000)}

    update = await send(
        app, ccr("r1", UPDATE, 1, "acc-r1", rg(VOICE, seconds(60), seconds(60), dest=NL))
    )
    assert update.rating_groups[0].cost == eur("0.12")
    end = await send(app, ccr("r1", TERMINATE, 2, "acc-r1", rg(VOICE, used=seconds(75), dest=NL)))
    assert end.result is ResultCode.SUCCESS
    # The call's 135 s are three started minutes, 0.36 with VAT (rating's price of the whole
    # call); 0.12 was debited for the first 60 s, so this report debits 0.24.
    assert end.rating_groups[0].cost == eur("0.24")
    assert await live_totals(app, "acc-r1") == {"main-EUR": (640_000, 0)}
    assert ledger_totals(app, "acc-r1") == {"main-EUR": 640_000}


async def test_credit_ends_with_the_units_rating_says_the_rest_buys(app: ChargingApp) -> None:
    await new_account(app, "acc-r1", balance="0.30")
    first = await send(app, ccr("r2", INITIAL, 0, "acc-r1", rg(VOICE, seconds(300), dest=NL)))
    group = first.rating_groups[0]
    # 0.30 buys two whole minutes at 0.12 (UnitsForAmount): the last grant.
    assert group.result is ResultCode.SUCCESS
    assert group.granted == seconds(120)
    assert group.final_unit is not None


async def test_no_tariff_is_rating_failed_and_nothing_is_reserved(app: ChargingApp) -> None:
    await new_account(app, "acc-r1", balance="1.00")
    answer = await send(app, ccr("r3", INITIAL, 0, "acc-r1", rg(VOICE, seconds(60), dest="4930")))
    assert answer.rating_groups[0].result is ResultCode.RATING_FAILED
    assert answer.rating_groups[0].granted is None
    assert await live_totals(app, "acc-r1") == {"main-EUR": (1_000_000, 0)}


async def test_rating_unreachable_is_unavailable_never_a_free_grant(
    app: ChargingApp, rating: RunningRating
) -> None:
    await new_account(app, "acc-r1", balance="1.00")
    await rating.stop(0)
    with pytest.raises(PricingUnavailable):
        await send(app, ccr("r4", INITIAL, 0, "acc-r1", rg(VOICE, seconds(60), dest=NL)))
    assert await live_totals(app, "acc-r1") == {"main-EUR": (1_000_000, 0)}
    assert ledger_totals(app, "acc-r1") == {"main-EUR": 1_000_000}
