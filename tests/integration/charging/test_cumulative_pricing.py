"""A call is priced once, as a whole, however many reports it takes (ADR 0011).

Worked example for a billing analyst, priced by the real rating service: plan
``cumulative`` calls the Netherlands at 0.05 EUR to connect, then 30/6 at 0.30 EUR a
minute (the first 30 s for 0.15, then every started 6 s for 0.03), no tax:

    a call of 118 s = 0.05 + 0.15 + ceil(88 / 6) = 15 x 0.03 = 0.45  ->  0.65 EUR

reported as Initial, three Updates of 40 s, 40 s and 25 s, and a Terminate of 13 s.
Each report debits the price of the call so far minus what was already debited:

    after  40 s: 0.05 + 0.15 +  2 x 0.03 = 0.26   debit 0.26
    after  80 s: 0.05 + 0.15 +  9 x 0.03 = 0.47   debit 0.21
    after 105 s: 0.05 + 0.15 + 13 x 0.03 = 0.59   debit 0.12
    after 118 s: 0.05 + 0.15 + 15 x 0.03 = 0.65   debit 0.06   total 0.65

(Pricing each report on its own would have charged 0.26 + 0.26 + 0.20 + 0.20 = 0.92:
the connection fee and the first increment four times.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import (
    CreditControlAnswer,
    RatingGroupRequest,
    RequestedAction,
    RequestType,
    ResultCode,
)
from services.charging.domain.units import Quantity
from services.common.clock import ManualClock
from services.rating.entrypoints.main import RunningRating
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    START,
    VOICE,
    add_bucket,
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

INITIAL, UPDATE, TERMINATE, EVENT = (
    RequestType.INITIAL,
    RequestType.UPDATE,
    RequestType.TERMINATE,
    RequestType.EVENT,
)

CATALOG = """
products: [{code: voice, unit: second}]
destinations: [{name: NL, prefixes: ["31"]}]
tax_regions:
  - {code: NL, name: NL, rounding: half_up, taxes: []}
time_bands:
  - code: evenings
    default_band: day
    bands:
      - {name: evening, days: [mon, tue, wed, thu, fri, sat, sun], from: "14:00", to: "00:00"}
plans:
  - code: cumulative
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        time_bands: evenings
        rates:
          - {id: nl, service: voice, destination: NL, connection_fee: "0.05",
             first_increment: 30, next_increment: 6,
             prices: {evening: {first: "0.30", next: "0.06"}, "*": {first: "0.15", next: "0.03"}}}
"""
NL = "31201234567"
ACCOUNT = "acc-cum"


def rg(requested: int | None = None, used: int | None = None) -> RatingGroupRequest:
    return RatingGroupRequest(
        VOICE,
        seconds(requested) if requested is not None else None,
        seconds(used) if used is not None else None,
        NL,
    )


def cost(answer: CreditControlAnswer) -> Quantity | None:
    group = answer.rating_groups[0]
    return Quantity.of_money(group.cost) if group.cost is not None else None


def micro(amount: str) -> int:
    return Quantity.of_money(eur(amount)).amount


@pytest.fixture
async def rating(redis_server: EmbeddedRedis, tmp_path: Path) -> AsyncIterator[RunningRating]:
    async with running_rating(redis_server.url, tmp_path, CATALOG) as running:
        add_account(running, ACCOUNT, plan="cumulative")
        yield running


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def app(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    rating: RunningRating,
    clock: ManualClock,
) -> AsyncIterator[ChargingApp]:
    async with priced_by_rating(database, redis_client, redis_server, rating, clock) as app:
        yield app


def priced_by_rating(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    rating: RunningRating,
    clock: ManualClock,
) -> AbstractAsyncContextManager[ChargingApp]:
    """A charging app (a worker) that prices through the running rating service."""
    return charging_app(
        database,
        redis_client,
        redis_server.url,
        clock=clock,
        in_memory_pricing=False,
        rating_addr=rating.address,
    )


async def test_rating_prices_the_worked_example(app: ChargingApp) -> None:
    # The figures of the module docstring are rating's, not charging's.
    for units, amount in ((40, "0.26"), (80, "0.47"), (105, "0.59"), (118, "0.65")):
        assert await app.pricing.price(ACCOUNT, "voice", NL, units, START) == eur(amount)


async def call_in_four_reports(app: ChargingApp, session: str, retries: int = 1) -> list[int]:
    """The worked example's call; each request sent ``retries`` times. Debits per report."""
    debits = []
    requests = [
        ccr(session, INITIAL, 0, ACCOUNT, rg(60)),
        ccr(session, UPDATE, 1, ACCOUNT, rg(60, 40)),
        ccr(session, UPDATE, 2, ACCOUNT, rg(60, 40)),
        ccr(session, UPDATE, 3, ACCOUNT, rg(60, 25)),
        ccr(session, TERMINATE, 4, ACCOUNT, rg(used=13)),
    ]
    for request in requests:
        # Retries race the first attempt, as a gateway resending on a timeout would.
        answers = await asyncio.gather(*(send(app, request) for _ in range(retries)))
        assert all(a == answers[0] for a in answers), "a retry must get the first answer"
        assert answers[0].result is ResultCode.SUCCESS
        if request.request_number > 0:
            charged = cost(answers[0])
            debits.append(charged.amount if charged else 0)
    return debits


async def test_a_call_in_four_reports_is_charged_rating_s_price_of_the_whole_call_once(
    app: ChargingApp,
) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    debits = await call_in_four_reports(app, "cum-1")
    assert debits == [micro("0.26"), micro("0.21"), micro("0.12"), micro("0.06")]
    assert sum(debits) == micro("0.65")
    assert await live_totals(app, ACCOUNT) == {"main-EUR": (micro("4.35"), 0)}
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.35")}


async def test_every_request_retried_still_charges_the_call_once(app: ChargingApp) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    debits = await call_in_four_reports(app, "cum-2", retries=5)
    assert sum(debits) == micro("0.65")
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.35")}


async def test_the_same_call_as_one_event_costs_the_same(app: ChargingApp) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    answer = await send(
        app,
        ccr("cum-ev", EVENT, 0, ACCOUNT, rg(118), action=RequestedAction.DIRECT_DEBITING),
    )
    assert answer.result is ResultCode.SUCCESS
    assert cost(answer) == Quantity.of_money(eur("0.65"))
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.35")}


async def test_grants_after_the_first_do_not_pay_the_connection_fee_again(
    app: ChargingApp,
) -> None:
    # 0.67 EUR: the first grant of 60 s reserves 0.05 + 0.15 + 5 x 0.03 = 0.35.
    await new_account(app, ACCOUNT, balance="0.67")
    first = await send(app, ccr("cum-3", INITIAL, 0, ACCOUNT, rg(60)))
    assert first.rating_groups[0].granted == seconds(60)
    assert first.rating_groups[0].final_unit is None
    assert await live_totals(app, ACCOUNT) == {"main-EUR": (micro("0.32"), micro("0.35"))}
    # 60 s used (0.35 debited), 0.32 left. The next 60 s cost 10 x 0.03 = 0.30 (no fee,
    # no first increment): a full grant, and the 0.02 left does not buy the next 6 s
    # (0.03), so this grant is the last one (final-unit indication).
    update = await send(app, ccr("cum-3", UPDATE, 1, ACCOUNT, rg(60, 60)))
    group = update.rating_groups[0]
    assert cost(update) == Quantity.of_money(eur("0.35"))
    assert group.granted == seconds(60)
    assert group.final_unit is not None
    assert await live_totals(app, ACCOUNT) == {"main-EUR": (micro("0.02"), micro("0.30"))}
    end = await send(app, ccr("cum-3", TERMINATE, 2, ACCOUNT, rg(used=60)))
    assert cost(end) == Quantity.of_money(eur("0.30"))
    # 120 s = 0.05 + 0.15 + 15 x 0.03 = 0.65: exactly rating's price of the whole call.
    assert await app.pricing.price(ACCOUNT, "voice", NL, 120, START) == eur("0.65")
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("0.02")}


async def test_a_partial_grant_is_sized_after_what_was_used(app: ChargingApp) -> None:
    # 0.52 EUR: Initial reserves 0.35 for 60 s; after 60 s used, 0.17 is left. After the
    # first minute it buys 5 x 6 s (0.15): a grant of 30 s. (Priced as a new call, 0.17
    # would buy nothing: the fee and the first 30 s alone cost 0.20.)
    await new_account(app, ACCOUNT, balance="0.52")
    await send(app, ccr("cum-4", INITIAL, 0, ACCOUNT, rg(60)))
    update = await send(app, ccr("cum-4", UPDATE, 1, ACCOUNT, rg(600, 60)))
    group = update.rating_groups[0]
    assert group.result is ResultCode.SUCCESS
    assert group.granted == seconds(30)
    assert group.final_unit is not None
    end = await send(app, ccr("cum-4", TERMINATE, 2, ACCOUNT, rg(used=30)))
    assert cost(end) == Quantity.of_money(eur("0.15"))
    # 90 s as one call: 0.05 + 0.15 + 10 x 0.03 = 0.50.
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("0.02")}


async def test_a_report_after_the_sweep_is_priced_with_the_rest_of_the_call(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    await send(app, ccr("cum-5", INITIAL, 0, ACCOUNT, rg(60)))
    await send(app, ccr("cum-5", UPDATE, 1, ACCOUNT, rg(60, 40)))  # 0.26
    clock.advance(timedelta(seconds=71))  # validity 60 s + grace 10 s
    await app.sweeper.sweep_once()
    assert await live_totals(app, ACCOUNT) == {"main-EUR": (micro("4.74"), 0)}
    late = await send(app, ccr("cum-5", TERMINATE, 2, ACCOUNT, rg(used=40)))
    assert late.result is ResultCode.SUCCESS
    # The call's 80 s cost 0.47 (priced at its start): 0.21 more, no second fee.
    assert cost(late) == Quantity.of_money(eur("0.21"))
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.53")}


async def test_a_session_priced_after_redis_lost_everything_keeps_its_position(
    app: ChargingApp, redis_client: aioredis.Redis
) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    await send(app, ccr("cum-6", INITIAL, 0, ACCOUNT, rg(60)))
    await send(app, ccr("cum-6", UPDATE, 1, ACCOUNT, rg(60, 40)))  # 0.26
    await redis_client.flushall()
    # The rebuilt session still knows the call's 40 s and 0.26: the next 40 s add 0.21.
    again = await send(app, ccr("cum-6", UPDATE, 2, ACCOUNT, rg(60, 40)))
    assert again.result is ResultCode.SUCCESS
    assert cost(again) == Quantity.of_money(eur("0.21"))
    await send(app, ccr("cum-6", TERMINATE, 3, ACCOUNT, rg(used=0)))
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.53")}


async def test_minutes_from_a_bucket_are_not_priced_and_money_pays_the_fee_once(
    app: ChargingApp,
) -> None:
    # 30 free seconds, then money: the money-charged part of the call is priced as one
    # call from its first money-charged second (fee and first increment once).
    await new_account(app, ACCOUNT, balance="5.00")
    await add_bucket(app, ACCOUNT, seconds(30).unit, 30, label="free seconds")
    first = await send(app, ccr("cum-7", INITIAL, 0, ACCOUNT, rg(60)))
    assert first.rating_groups[0].granted == seconds(30)
    second = await send(app, ccr("cum-7", UPDATE, 1, ACCOUNT, rg(60, 30)))
    assert cost(second) is None
    assert second.rating_groups[0].granted == seconds(60)
    third = await send(app, ccr("cum-7", UPDATE, 2, ACCOUNT, rg(60, 40)))
    assert cost(third) == Quantity.of_money(eur("0.26"))
    end = await send(app, ccr("cum-7", TERMINATE, 3, ACCOUNT, rg(used=40)))
    assert cost(end) == Quantity.of_money(eur("0.21"))
    assert ledger_totals(app, ACCOUNT)["main-EUR"] == micro("4.53")


async def test_units_inside_an_increment_already_paid_still_count_for_the_call(
    app: ChargingApp,
) -> None:
    # 40 s cost 0.26 and pay up to 42 s (2 x 6 s after the first 30). The 2 s granted next
    # cost nothing more, but the call's total still grows: 49 s = 0.05 + 0.15 + 4 x 0.03.
    await new_account(app, ACCOUNT, balance="5.00")
    await send(app, ccr("cum-8", INITIAL, 0, ACCOUNT, rg(60)))
    inside = await send(app, ccr("cum-8", UPDATE, 1, ACCOUNT, rg(2, 40)))
    assert cost(inside) == Quantity.of_money(eur("0.26"))
    assert inside.rating_groups[0].granted == seconds(2)
    assert await live_totals(app, ACCOUNT) == {"main-EUR": (micro("4.74"), 0)}
    await send(app, ccr("cum-8", UPDATE, 2, ACCOUNT, rg(6, 2)))
    await send(app, ccr("cum-8", UPDATE, 3, ACCOUNT, rg(6, 6)))
    await send(app, ccr("cum-8", TERMINATE, 4, ACCOUNT, rg(used=1)))
    assert await app.pricing.price(ACCOUNT, "voice", NL, 49, START) == eur("0.32")
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.68")}


async def test_a_call_is_priced_at_the_time_it_started(
    app: ChargingApp, clock: ManualClock
) -> None:
    # START is 13:00 in Amsterdam (day rates); evening rates (double) begin at 14:00.
    await new_account(app, ACCOUNT, balance="5.00")
    await send(app, ccr("cum-9", INITIAL, 0, ACCOUNT, rg(60)))
    clock.advance(timedelta(hours=2))
    assert await app.pricing.price(ACCOUNT, "voice", NL, 60, clock.now()) == eur("0.65")
    end = await send(app, ccr("cum-9", TERMINATE, 1, ACCOUNT, rg(used=60)))
    # 60 s at the day rates the call started in: 0.05 + 0.15 + 5 x 0.03.
    assert cost(end) == Quantity.of_money(eur("0.35"))
    assert ledger_totals(app, ACCOUNT) == {"main-EUR": micro("4.65")}


# -- remembered positions (ADR 0019) -------------------------------------------------------------
def count_session_reads(app: ChargingApp) -> list[int]:
    """Counts the position reads (HMGET of the session) ``app`` makes from now on."""
    reads = [0]
    read = app.store.session_fields

    async def counted(account_id: str, session_id: str, names: Any) -> dict[str, str]:
        reads[0] += 1
        return await read(account_id, session_id, names)

    app.store.session_fields = counted  # type: ignore[method-assign]
    return reads


async def test_later_reports_are_priced_from_the_position_remembered_from_the_last_answer(
    app: ChargingApp,
) -> None:
    await new_account(app, ACCOUNT, balance="5.00")
    reads = count_session_reads(app)
    debits = await call_in_four_reports(app, "cum-10")
    assert debits == [micro("0.26"), micro("0.21"), micro("0.12"), micro("0.06")]
    assert reads == [0], "each report's position came from the answer before it"


@pytest.mark.parametrize("free_seconds", [0, 50])
async def test_a_session_moved_on_by_another_worker_is_charged_as_on_one_worker(
    app: ChargingApp,
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    rating: RunningRating,
    clock: ManualClock,
    free_seconds: int,
) -> None:
    # Two workers answer reports of the same call in turn: each remembers a position the
    # other has since moved. The script refuses prices from a stale position (STALE), the
    # worker prices again from the session's, and every report is charged exactly as one
    # worker charges the same call: the remembered position is a hint, never the truth.
    alone, shared = ACCOUNT, "acc-cum-shared"
    add_account(rating, shared, plan="cumulative")
    for account in (alone, shared):
        await new_account(app, account, balance="5.00")
        if free_seconds:
            await add_bucket(app, account, seconds(free_seconds).unit, free_seconds, label="free")
    kinds = [INITIAL, UPDATE, UPDATE, UPDATE, TERMINATE]
    reports = [rg(60), rg(60, 40), rg(60, 40), rg(60, 25), rg(used=13)]

    async def call(account: str, workers: list[ChargingApp]) -> list[CreditControlAnswer]:
        answers = []
        for number, (worker, kind, group) in enumerate(zip(workers, kinds, reports, strict=True)):
            answer = await send(worker, ccr(f"cum-11-{account}", kind, number, account, group))
            assert answer.result is ResultCode.SUCCESS, (number, answer)
            answers.append(answer)
        return answers

    async with priced_by_rating(database, redis_client, redis_server, rating, clock) as other:
        expected = await call(alone, [app] * 5)
        turns = await call(shared, [app, other, app, other, app])
    assert [cost(a) for a in turns] == [cost(a) for a in expected]
    assert [a.rating_groups[0].granted for a in turns] == [
        a.rating_groups[0].granted for a in expected
    ]
    # Bucket ids differ between the accounts; the amounts per bucket do not.
    assert sorted(ledger_totals(app, shared).values()) == sorted(ledger_totals(app, alone).values())
    if not free_seconds:  # all money: rating's price of the 118 s call, once
        assert ledger_totals(app, shared) == {"main-EUR": micro("4.35")}
