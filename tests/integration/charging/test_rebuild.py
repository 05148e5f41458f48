"""Redis loses everything mid-run: balances are rebuilt from the ledger (CHG-9)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import CreditControlRequest, RequestType, ResultCode
from services.charging.domain.units import TIME, scaled_money
from services.common.clock import ManualClock
from services.common.errors import Unavailable
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    SMS,
    START,
    VOICE,
    add_bucket,
    ccr,
    charging_app,
    drain,
    eur,
    ledger_totals,
    live_totals,
    money,
    new_account,
    rg,
    seconds,
    send,
    sms,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE
# The fence must outlast any commit of an entry read from the lost Redis: stale bound
# plus transaction timeout (see sql_ledger.py).
FENCED: dict[str, Any] = {
    "rebuild_fence_ms": 800,
    "ledger_stale_seconds": 0.2,
    "ledger_timeout_ms": 500,
}


@pytest.fixture
async def two_processes(
    database: TestDatabase, redis_server: EmbeddedRedis
) -> AsyncIterator[list[ChargingApp]]:
    clock = ManualClock(START)
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(2):
            client = aioredis.Redis.from_url(redis_server.url)
            stack.push_async_callback(client.aclose)
            apps.append(
                await stack.enter_async_context(
                    charging_app(database, client, redis_server.url, clock=clock, **FENCED)
                )
            )
        await apps[0].redis.flushdb()
        await apps[0].store.load()
        yield apps


async def answered(app: ChargingApp, request: CreditControlRequest):  # type: ignore[no-untyped-def]
    """A client that retries the same request until it gets an answer."""
    for _ in range(200):
        try:
            return await send(app, request)
        except Unavailable:
            await asyncio.sleep(0.02)
    raise AssertionError("never answered")


async def test_redis_flushed_mid_run_is_rebuilt_from_the_ledger_with_nothing_lost(
    two_processes: list[ChargingApp],
) -> None:
    apps = two_processes
    accounts = [f"f{i}" for i in range(8)]
    minutes: dict[str, str] = {}
    for account in accounts:
        await new_account(apps[0], account, balance="50.00")
        minutes[account] = await add_bucket(apps[0], account, TIME, 600, priority=1)
    rng = random.Random(7)
    charged_money: dict[str, int] = defaultdict(int)
    charged_units: dict[str, int] = defaultdict(int)
    flushed = asyncio.Event()
    halfway = asyncio.Event()
    progress = 0

    async def session(index: int) -> None:
        nonlocal progress
        account = accounts[index % len(accounts)]
        name = f"fs{index}"
        steps = [ccr(name, INITIAL, 0, account, rg(VOICE, seconds(60)))]
        for number in range(1, 5):
            steps.append(
                ccr(
                    name,
                    UPDATE,
                    number,
                    account,
                    rg(VOICE, seconds(60), seconds(rng.randint(1, 60))),
                )
            )
        steps.append(ccr(name, TERMINATE, 5, account, rg(VOICE, used=seconds(rng.randint(0, 60)))))
        for step in steps:
            app = apps[rng.randrange(2)]
            first = await answered(app, step)
            assert first.result in (ResultCode.SUCCESS, ResultCode.UNKNOWN_SESSION_ID)
            group = first.rating_groups[0] if first.rating_groups else None
            if group is not None:
                if group.cost is not None:
                    charged_money[account] += scaled_money(group.cost)
                if group.charged_units is not None:
                    charged_units[account] += group.charged_units.amount
            if rng.random() < 0.3:
                # The answer was "lost": the client asks again, maybe after the flush.
                again = await answered(apps[rng.randrange(2)], step)
                assert again == first
            progress += 1
            if progress >= 120:
                halfway.set()
            await asyncio.sleep(rng.random() / 100)

    async def flusher() -> None:
        await halfway.wait()
        await apps[0].redis.flushall()  # Redis loses everything, scripts included
        flushed.set()

    await asyncio.gather(flusher(), *(session(i) for i in range(48)))
    assert flushed.is_set()
    assert sum(app.loader.rebuilt for app in apps) >= len(accounts)  # every account rebuilt

    for account in accounts:
        await drain(apps[0], account)
        ledger = ledger_totals(apps[0], account)
        live = await live_totals(apps[0], account)
        # Rebuilt balances equal the ledger: credits - debits = available + reserved.
        assert {b: a + r for b, (a, r) in live.items()} == {b: ledger.get(b, 0) for b in live}, (
            account
        )
        # Nothing lost, nothing twice: the ledger's debits are exactly what was answered.
        assert (
            ledger["main-EUR"]
            == scaled_money(
                __import__("services.common.money", fromlist=["Money"]).Money.of("50.00", "EUR")
            )
            - charged_money[account]
        ), account
        assert ledger.get(minutes[account], 0) == 600 - charged_units[account], account


async def test_reservations_granted_before_a_flush_are_held_again(
    two_processes: list[ChargingApp],
) -> None:
    """Money granted to one session is not granted again after the rebuild (CHG-3, CHG-9).

    The rebuild once set balances to credits - debits with nothing reserved, so another
    session was granted the money the first still held; the first session's usage,
    reported later, then took the prepaid account below zero.
    """
    first, second = two_processes
    await new_account(first, "held", balance="0.30")
    granted = await send(first, ccr("h1", INITIAL, 0, "held", rg(VOICE, seconds(180))))
    assert granted.result is ResultCode.SUCCESS
    assert await live_totals(first, "held") == {"main-EUR": (0, money("0.30").amount)}

    await first.redis.flushall()
    refused = await answered(second, ccr("h2", INITIAL, 0, "held", rg(VOICE, seconds(60))))
    assert refused.result is ResultCode.CREDIT_LIMIT_REACHED
    assert second.loader.rebuilt == 1
    assert await live_totals(second, "held") == {"main-EUR": (0, money("0.30").amount)}

    # The first session reports the usage it was granted: charged from its reservation.
    used = await answered(first, ccr("h1", UPDATE, 1, "held", rg(VOICE, seconds(60), seconds(180))))
    # Charged in full from the reservation; nothing is left to grant the next minute from.
    assert used.result is ResultCode.CREDIT_LIMIT_REACHED
    assert used.rating_groups[0].cost == eur("0.30")
    assert await live_totals(first, "held") == {"main-EUR": (0, 0)}
    await drain(first, "held")
    assert ledger_totals(first, "held") == {"main-EUR": 0}


def manual_clock(app: ChargingApp) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


async def test_held_again_reservations_are_swept_at_their_own_sweep_time(
    two_processes: list[ChargingApp],
) -> None:
    first, second = two_processes
    clock = manual_clock(first)
    await new_account(first, "sw", balance="1.00")
    minutes = await add_bucket(first, "sw", TIME, 120, priority=1)
    # Validity 60 s + grace 10 s: "old" (units) is swept at 70 s, "new" (money) at 100 s.
    await send(first, ccr("old", INITIAL, 0, "sw", rg(VOICE, seconds(120))))
    clock.advance(timedelta(seconds=30))
    await send(first, ccr("new", INITIAL, 0, "sw", rg(VOICE, seconds(60))))
    before = {minutes: (0, 120), "main-EUR": (money("0.90").amount, money("0.10").amount)}
    assert await live_totals(first, "sw") == before

    await first.redis.flushall()
    await answered(second, ccr("probe", INITIAL, 0, "sw", rg(SMS, sms(1))))
    assert await live_totals(second, "sw") == {
        minutes: (0, 120),
        "main-EUR": (money("0.85").amount, money("0.15").amount),
    }

    clock.advance(timedelta(seconds=39))  # 69 s: nothing is due yet
    await second.sweeper.sweep_once()
    assert (await live_totals(second, "sw"))[minutes] == (0, 120)
    clock.advance(timedelta(seconds=1))  # 70 s: "old" is swept, "new" and "probe" are not
    await second.sweeper.sweep_once()
    assert await live_totals(second, "sw") == {
        minutes: (120, 0),
        "main-EUR": (money("0.85").amount, money("0.15").amount),
    }
    clock.advance(timedelta(seconds=30))
    await second.sweeper.sweep_once()
    assert await live_totals(second, "sw") == {
        minutes: (120, 0),
        "main-EUR": (money("1.00").amount, 0),
    }


async def test_a_reservation_past_its_sweep_time_is_returned_by_the_rebuild(
    two_processes: list[ChargingApp],
) -> None:
    first, second = two_processes
    clock = manual_clock(first)
    await new_account(first, "gone", balance="1.00")
    await send(first, ccr("g1", INITIAL, 0, "gone", rg(VOICE, seconds(60))))
    clock.advance(timedelta(seconds=71))  # past validity + grace, but no sweep ran
    await first.redis.flushall()
    # The late report is still debited, answered as after a sweep (the session was closed).
    update = await answered(
        second, ccr("g1", UPDATE, 1, "gone", rg(VOICE, seconds(60), seconds(60)))
    )
    assert update.result is ResultCode.UNKNOWN_SESSION_ID
    assert update.rating_groups[0].cost == eur("0.10")
    assert await live_totals(second, "gone") == {"main-EUR": (money("0.90").amount, 0)}


async def test_a_forfeited_bucket_stays_empty_after_a_rebuild(
    two_processes: list[ChargingApp],
) -> None:
    """The EXPIRY entry is in the ledger, so the rebuild gives the ended bucket nothing
    and the next maintenance pass has nothing to forfeit again (ADR 0021)."""
    first, second = two_processes
    clock = manual_clock(first)
    await new_account(first, "gone", balance="1.00")
    minutes = await add_bucket(
        first, "gone", TIME, 300, valid_until=clock.now() + timedelta(minutes=5)
    )
    clock.advance(timedelta(minutes=6))
    assert await first.maintenance.forfeit_expired_once() == 1

    await first.redis.flushall()
    for _ in range(200):
        try:
            await second.handlers.balance("gone")
            break
        except Unavailable:
            await asyncio.sleep(0.02)
    assert await live_totals(second, "gone") == {
        "main-EUR": (money("1.00").amount, 0),
        minutes: (0, 0),
    }
    assert await second.maintenance.forfeit_expired_once() == 0
    assert ledger_totals(second, "gone") == {"main-EUR": money("1.00").amount, minutes: 0}
