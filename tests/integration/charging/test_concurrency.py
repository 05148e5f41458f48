"""No overdraft under concurrency; retries charge exactly once (CHG-2, CHG-3)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.service_layer.ports import JournalEntry
from services.common.clock import ManualClock
from services.common.errors import Unavailable
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    START,
    VOICE,
    ccr,
    charging_app,
    drain,
    ledger_totals,
    live_totals,
    money,
    new_account,
    rg,
    seconds,
    send,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE


@pytest.fixture(params=[0, 3], ids=["batches-at-once", "batches-wait-3-turns"])
async def four_processes(
    database: TestDatabase, redis_server: EmbeddedRedis, request: pytest.FixtureRequest
) -> AsyncIterator[list[ChargingApp]]:
    """Four independent app instances (like worker processes) on the same Redis and SQL;
    their Redis batches and ledger commits sent at once or after 3 loop turns (ADR 0019)."""
    clock = ManualClock(START)
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(4):
            client = aioredis.Redis.from_url(redis_server.url)
            stack.push_async_callback(client.aclose)
            apps.append(
                await stack.enter_async_context(
                    charging_app(
                        database,
                        client,
                        redis_server.url,
                        clock=clock,
                        batch_wait_turns=request.param,
                    )
                )
            )
        await apps[0].redis.flushdb()
        await apps[0].store.load()
        yield apps


async def test_1000_concurrent_reservations_grant_exactly_what_the_balance_covers(
    four_processes: list[ChargingApp],
) -> None:
    apps = four_processes
    # 10.00 EUR at 0.10 EUR per minute: exactly 100 one-minute grants.
    await new_account(apps[0], "hot", balance="10.00")
    requests = [ccr(f"c{i}", INITIAL, 0, "hot", rg(VOICE, seconds(60))) for i in range(1000)]
    answers = await asyncio.gather(
        *(send(apps[i % 4], request) for i, request in enumerate(requests))
    )
    granted = [a for a in answers if a.rating_groups[0].granted == seconds(60)]
    refused = [a for a in answers if a.rating_groups[0].result is ResultCode.CREDIT_LIMIT_REACHED]
    assert len(granted) == 100
    assert len(refused) == 900
    assert await live_totals(apps[0], "hot") == {"main-EUR": (0, money("10.00").amount)}
    # Everyone uses the minute: the balance ends at exactly zero, never below.
    await asyncio.gather(
        *(
            send(apps[i % 4], ccr(a.session_id, TERMINATE, 1, "hot", rg(VOICE, used=seconds(60))))
            for i, a in enumerate(granted)
        )
    )
    assert await live_totals(apps[0], "hot") == {"main-EUR": (0, 0)}
    assert ledger_totals(apps[0], "hot") == {"main-EUR": 0}


async def test_every_request_retried_up_to_five_times_is_charged_once(app: ChargingApp) -> None:
    await new_account(app, "retry", balance="100.00")
    rng = random.Random(4)
    sessions = [f"r{i}" for i in range(40)]

    async def play(session: str) -> None:
        steps = [
            ccr(session, INITIAL, 0, "retry", rg(VOICE, seconds(60))),
            ccr(session, UPDATE, 1, "retry", rg(VOICE, seconds(60), seconds(60))),
            ccr(session, UPDATE, 2, "retry", rg(VOICE, seconds(60), seconds(45))),
            ccr(session, TERMINATE, 3, "retry", rg(VOICE, used=seconds(20))),
        ]
        for step in steps:
            copies = rng.randint(1, 5)
            # Retries both in a burst (a client timing out early) and one after another.
            burst = await asyncio.gather(*(send(app, step) for _ in range(copies)))
            again = [await send(app, step) for _ in range(rng.randint(0, 2))]
            assert all(answer == burst[0] for answer in [*burst, *again])

    await asyncio.gather(*(play(s) for s in sessions))
    # Each session: three started minutes at 0.10 EUR.
    expected = money("100.00").amount - len(sessions) * money("0.30").amount
    assert ledger_totals(app, "retry") == {"main-EUR": expected}
    assert await live_totals(app, "retry") == {"main-EUR": (expected, 0)}


class CrashingWriter:
    """A ledger writer whose process 'dies' before committing, every other call."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0

    async def commit(self, entries: list[JournalEntry], extras: object = ()) -> None:
        self.calls += 1
        if self.calls % 2 == 1:
            raise Unavailable("process died between the Lua script and the SQL commit")
        await self.real.commit(entries, extras)  # type: ignore[attr-defined]


async def test_a_crash_between_script_and_commit_is_neither_lost_nor_doubled(
    app: ChargingApp,
) -> None:
    await new_account(app, "crash", balance="10.00")
    real = app.handlers.writer
    app.handlers.writer = CrashingWriter(real)  # type: ignore[assignment]
    steps = [
        ccr("k1", INITIAL, 0, "crash", rg(VOICE, seconds(60))),
        ccr("k1", UPDATE, 1, "crash", rg(VOICE, seconds(60), seconds(60))),
        ccr("k1", TERMINATE, 2, "crash", rg(VOICE, used=seconds(60))),
    ]
    for step in steps:
        while True:  # the client retries until it gets an answer
            try:
                answer = await send(app, step)
                break
            except Unavailable:
                continue
        assert answer.result is ResultCode.SUCCESS
    app.handlers.writer = real
    assert ledger_totals(app, "crash") == {"main-EUR": money("9.80").amount}


async def test_a_crashed_request_whose_client_never_retries_is_drained(app: ChargingApp) -> None:
    await new_account(app, "orphan", balance="10.00")
    await send(app, ccr("o1", INITIAL, 0, "orphan", rg(VOICE, seconds(60))))
    real = app.handlers.writer
    app.handlers.writer = CrashingWriter(real)  # type: ignore[assignment]
    with pytest.raises(Unavailable):
        await send(app, ccr("o1", TERMINATE, 1, "orphan", rg(VOICE, used=seconds(60))))
    app.handlers.writer = real
    # Redis has the debit, SQL not yet: the reconciler commits the journal.
    assert await live_totals(app, "orphan") == {"main-EUR": (money("9.90").amount, 0)}
    assert ledger_totals(app, "orphan") == {"main-EUR": money("10.00").amount}
    await drain(app, "orphan")
    assert ledger_totals(app, "orphan") == {"main-EUR": money("9.90").amount}
