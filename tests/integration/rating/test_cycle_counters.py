"""What earlier usage of the account changes: count-limited discounts, included
allowances and tier positions, across imports, quotes, re-rating, a restart and
concurrent imports (on SQLite and PostgreSQL).

Catalog below (written for these tests). Accounts: Europe/Amsterdam, bill cycle day
1, tax region NL (VAT 21 % exclusive, half-up to the cent). Worked examples:

* voice NL, 60/60 at 0.10 a minute, no connection fee: a 60 s call is 0.10 net,
  VAT 0.021 -> 0.02, gross 0.12. Half price (FIRST3): 0.05 net, VAT 0.0105 -> 0.01,
  gross 0.06.
* FIRST3: 50 % off the first 3 voice calls of the account, ever.
* SMS2: the first 2 SMS of each bill cycle free (100 %); an SMS is 0.10 net, 0.12 gross.
* plan ``bundle``: 600 voice seconds included per cycle, data graduated by unit:
  units 1-100 at 0.01, beyond at 0.005.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from google.protobuf import timestamp_pb2
from google.type import money_pb2
from pydantic import SecretStr

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.clock import ManualClock
from services.common.grpc_client import open_channel
from services.rating.config import RatingSettings
from services.rating.entrypoints.main import RunningRating, start
from suite.redis_server import EmbeddedRedis
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.rating.conftest import add_account, upload

CATALOG = """\
numbering: {country_code: "31", international_prefix: "00", national_prefix: "0"}
products:
  - {code: voice, unit: second}
  - {code: sms, unit: event}
  - {code: data, unit: unit}
destinations:
  - {name: NL, prefixes: ["31"]}
tax_regions:
  - code: NL
    taxes: [{code: VAT, name: BTW, percent: "21"}]
discounts:
  - {code: FIRST3, kind: percent, value: "50", max_uses: 3, services: [voice]}
  - {code: SMS2, kind: percent, value: "100", max_uses: 2, uses_per: cycle, services: [sms]}
plans:
  - code: counted
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        discounts: [FIRST3, SMS2]
        rates:
          - id: nl
            service: voice
            destination: NL
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.10", next: "0.10"}}
          - {id: sms, service: sms, model: {kind: per_unit, price: "0.10"}}
  - code: bundle
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        allowances: [{code: minutes, service: voice, units: 600}]
        rates:
          - id: nl
            service: voice
            destination: NL
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.10", next: "0.10"}}
          - id: data
            service: data
            model:
              kind: graduated
              tiers: [{up_to: 100, unit_price: "0.01"}, {unit_price: "0.005"}]
"""

HEADER = b"record_id,account_id,service,destination,event_time,quantity\n"
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


def calls(prefix: str, account: str, count: int, seconds: int = 60, day: int = 2) -> bytes:
    """``count`` calls to an Amsterdam landline in March, one a minute apart."""
    return b"".join(
        f"{prefix}-{i},{account},voice,020555{i:04d},2026-03-{day:02d}T09:{i % 60:02d}:00Z,"
        f"{seconds}\n".encode()
        for i in range(count)
    )


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def money(value: money_pb2.Money) -> str:
    return str((Decimal(value.units) + Decimal(value.nanos) / 10**9).quantize(Decimal("0.01")))


async def gross_by_record(stub: rating_pb2_grpc.RatingServiceStub) -> dict[str, str]:
    reply = await stub.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=1000))
    return {u.record_id: money(u.amount) for u in reply.rated_usage}


async def quote(
    stub: rating_pb2_grpc.RatingServiceStub,
    account: str,
    service: str,
    quantity: int,
    unit: rating_pb2.QuantityUnit.ValueType = rating_pb2.QUANTITY_UNIT_SECOND,
    destination: str = "0205550000",
    at: datetime = datetime(2026, 3, 20, 10, 0, tzinfo=UTC),
) -> rating_pb2.Charge:
    reply: rating_pb2.QuoteResponse = await stub.Quote(
        rating_pb2.QuoteRequest(
            account_id=account,
            service=service,
            destination=destination,
            event_time=stamp(at),
            quantity=rating_pb2.Quantity(value=quantity, unit=unit),
        )
    )
    charge: rating_pb2.Charge = reply.charge
    return charge


def settings_for(database: TestDatabase, redis_url: str, tmp_path: Path) -> RatingSettings:
    return RatingSettings(
        service_token=SecretStr(TEST_TOKEN),
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        database_url=database.url,
        database_schema=database.schema,
        drop_dir=tmp_path / "drop",
        batch_size=3,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def ready(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> rating_pb2_grpc.RatingServiceStub:
    await stub.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=CATALOG))
    add_account(rating, "acc_counted", plan="counted")
    add_account(rating, "acc_bundle", plan="bundle")
    return stub


async def test_count_limited_discount_stops_after_its_uses_across_files_and_quotes(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # Before any usage a quote gets the discount: 0.06 gross.
    assert money((await quote(ready, "acc_counted", "voice", 60)).gross) == "0.06"
    await upload(ready, "a.csv", HEADER + calls("a", "acc_counted", 2))
    # Two of the three uses are gone; the quote still gets the third.
    charge = await quote(ready, "acc_counted", "voice", 60)
    assert money(charge.gross) == "0.06"
    assert [d.code for d in charge.discounts] == ["FIRST3"]
    await upload(ready, "b.csv", HEADER + calls("b", "acc_counted", 3))
    assert await gross_by_record(ready) == {
        "a-0": "0.06",
        "a-1": "0.06",
        "b-0": "0.06",  # the third use
        "b-1": "0.12",
        "b-2": "0.12",
    }
    # All three used: a quote is at full price and names no discount.
    charge = await quote(ready, "acc_counted", "voice", 60)
    assert money(charge.gross) == "0.12"
    assert list(charge.discounts) == []


async def test_discount_counted_per_cycle_starts_again_in_the_next_cycle(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    sms = b"".join(
        f"s-{n},acc_counted,sms,,{when},1\n".encode()
        for n, when in enumerate(
            [
                "2026-03-03T10:00:00Z",
                "2026-03-04T10:00:00Z",
                "2026-03-05T10:00:00Z",  # third of March: paid
                "2026-03-31T22:30:00Z",  # 1 April 00:30 in Amsterdam: next cycle, free
            ]
        )
    )
    imported = await upload(ready, "sms.csv", HEADER + sms)
    assert imported.rated == 4
    assert await gross_by_record(ready) == {
        "s-0": "0.00",
        "s-1": "0.00",
        "s-2": "0.12",
        "s-3": "0.00",
    }
    # One free SMS left in April, none in March.
    march = await quote(
        ready, "acc_counted", "sms", 1, rating_pb2.QUANTITY_UNIT_EVENT, destination=""
    )
    april = await quote(
        ready,
        "acc_counted",
        "sms",
        1,
        rating_pb2.QUANTITY_UNIT_EVENT,
        destination="",
        at=datetime(2026, 4, 10, tzinfo=UTC),
    )
    assert (money(march.gross), money(april.gross)) == ("0.12", "0.00")


async def test_rerating_does_not_count_a_discount_use_twice(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await upload(ready, "a.csv", HEADER + calls("a", "acc_counted", 2))
    reply = await ready.Rerate(
        rating_pb2.RerateRequest(
            account_id="acc_counted",
            period_start=stamp(datetime(2026, 3, 1, tzinfo=UTC)),
            period_end=stamp(datetime(2026, 4, 1, tzinfo=UTC)),
        )
    )
    assert (reply.records, reply.changed) == (2, 0)
    # Still one use left: re-rating released the two uses and drew them again.
    await upload(ready, "b.csv", HEADER + calls("b", "acc_counted", 2))
    assert await gross_by_record(ready) == {
        "a-0": "0.06",
        "a-1": "0.06",
        "b-0": "0.06",
        "b-1": "0.12",
    }


async def test_quote_and_units_for_amount_draw_the_allowance_left_in_the_cycle(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # 480 s of the 600 s allowance used: 120 s (two increments) left.
    await upload(ready, "a.csv", HEADER + calls("a", "acc_bundle", 1, seconds=480))
    # 300 s = 5 increments: 2 from the allowance, 3 at 0.10 = 0.30 net, VAT 0.063 -> 0.06.
    charge = await quote(ready, "acc_bundle", "voice", 300)
    assert (charge.allowance_used.value, money(charge.net), money(charge.gross)) == (
        120,
        "0.30",
        "0.36",
    )
    # 0.25 gross buys the 120 s left plus 2 minutes (0.20 net, 0.24 gross); a third
    # minute would cost 0.36.
    units = await ready.UnitsForAmount(
        rating_pb2.UnitsForAmountRequest(
            account_id="acc_bundle",
            service="voice",
            destination="0205550000",
            event_time=stamp(datetime(2026, 3, 20, 10, 0, tzinfo=UTC)),
            amount=money_pb2.Money(currency_code="EUR", nanos=250_000_000),
        )
    )
    assert (units.quantity.value, money(units.charge.gross)) == (240, "0.24")
    # Rating the quoted usage charges exactly the quote.
    await upload(
        ready,
        "b.csv",
        HEADER + b"b-0,acc_bundle,voice,0205550000,2026-03-20T10:00:00Z,300\n",
    )
    assert (await gross_by_record(ready))["b-0"] == "0.36"


async def test_quote_continues_the_graduated_tiers_from_the_cycle_usage(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await upload(
        ready, "d.csv", HEADER + b"d-0,acc_bundle,data,,2026-03-05T10:00:00Z,80\n"
    )  # 80 x 0.01 = 0.80 net, 0.97 gross (VAT 0.168 -> 0.17)
    # 50 more units: 20 at 0.01 + 30 at 0.005 = 0.35 net, VAT 0.0735 -> 0.07, gross 0.42.
    charge = await quote(
        ready, "acc_bundle", "data", 50, rating_pb2.QUANTITY_UNIT_UNIT, destination=""
    )
    assert (money(charge.net), money(charge.gross)) == ("0.35", "0.42")
    await upload(ready, "e.csv", HEADER + b"e-0,acc_bundle,data,,2026-03-20T10:00:00Z,50\n")
    assert await gross_by_record(ready) == {"d-0": "0.97", "e-0": "0.42"}


async def test_concurrent_imports_draw_the_allowance_exactly_once(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # Two files of 30 one-minute calls each for one account, sent at the same time:
    # 3,600 s against a 600 s allowance. Exactly 10 calls are free, 50 cost 0.12 gross.
    first = HEADER + calls("a", "acc_bundle", 30)
    second = HEADER + calls("b", "acc_bundle", 30, day=3)
    a, b = await asyncio.gather(
        upload(ready, "a.csv", first, chunk=256), upload(ready, "b.csv", second, chunk=256)
    )
    assert (a.rated, b.rated) == (30, 30)
    reply = await ready.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=1000))
    assert sum(u.charge.allowance_used.value for u in reply.rated_usage) == 600
    costs = sorted(money(u.amount) for u in reply.rated_usage)
    assert costs == ["0.00"] * 10 + ["0.12"] * 50
    # Nothing left to draw: a quote pays the full minute.
    assert money((await quote(ready, "acc_bundle", "voice", 60)).gross) == "0.12"


async def test_counts_survive_a_restart(
    rating: RunningRating,
    ready: rating_pb2_grpc.RatingServiceStub,
    database: TestDatabase,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    clock: ManualClock,
) -> None:
    await upload(ready, "a.csv", HEADER + calls("a", "acc_counted", 3))
    # A second process on the same database (the first one's memory is not shared).
    client = aioredis.Redis.from_url(redis_server.url)
    again = await start(
        settings_for(database, redis_server.url, tmp_path / "second"),
        clock=clock,
        redis_client=client,
        background=False,
    )
    try:
        async with open_channel(again.address, TEST_TOKEN, traced=False) as channel:
            fresh = rating_pb2_grpc.RatingServiceStub(channel)
            assert money((await quote(fresh, "acc_counted", "voice", 60)).gross) == "0.12"
            await upload(fresh, "b.csv", HEADER + calls("b", "acc_counted", 1))
            assert (await gross_by_record(fresh))["b-0"] == "0.12"
    finally:
        await again.stop(0)


async def test_reprocessed_rejects_draw_the_uses_left(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    # Two calls of an account rating does not know yet are rejected ...
    late = await upload(ready, "late.csv", HEADER + calls("late", "acc_late", 2))
    assert late.rejected == 2
    add_account(rating, "acc_late", plan="counted")
    # ... meanwhile two calls of the same account arrive and use two of the three uses.
    await upload(ready, "now.csv", HEADER + calls("now", "acc_late", 2, day=3))
    fixed = await ready.ReprocessRejects(rating_pb2.ReprocessRejectsRequest(file_id=late.file_id))
    assert fixed.rated == 2
    costs = await gross_by_record(ready)
    # The last use goes to the first reprocessed call, the other pays in full.
    assert costs == {"now-0": "0.06", "now-1": "0.06", "late-0": "0.06", "late-1": "0.12"}


async def test_a_batch_of_questions_sees_its_own_draws_and_stores_nothing(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await upload(ready, "a.csv", HEADER + calls("a", "acc_counted", 1))  # one use gone
    events = [
        rating_pb2.UsageEvent(
            record_id=f"q{n}",
            account_id="acc_counted",
            service="voice",
            destination="0205550000",
            event_time=stamp(datetime(2026, 3, 20, 10, n, tzinfo=UTC)),
            quantity=rating_pb2.Quantity(value=60, unit=rating_pb2.QUANTITY_UNIT_SECOND),
        )
        for n in range(3)
    ]
    # Two uses left: the first two events of the batch get them, the third does not.
    reply = await ready.RateEvents(rating_pb2.RateEventsRequest(events=events))
    assert [money(r.charge.gross) for r in reply.results] == ["0.06", "0.06", "0.12"]
    # A question draws nothing: the same batch gets the same answer again.
    again = await ready.RateEvents(rating_pb2.RateEventsRequest(events=events))
    assert [money(r.charge.gross) for r in again.results] == ["0.06", "0.06", "0.12"]
