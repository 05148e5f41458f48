"""Balance checkpoints (issue 9 item 5, ADR 0036).

A balance is the account's checkpoint plus the ledger entries after it, so a rebuild
after a Redis loss reads a bounded number of ledger rows however old the account. The
checkpoint pass only covers entries no ledger transaction can still commit below.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, update

from services.charging.adapters import orm
from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.domain.units import TIME, Quantity, money_unit
from services.charging.service_layer.commands import CloseBucket, TopUp
from services.common.clock import ManualClock
from services.common.errors import Unavailable
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    VOICE,
    add_bucket,
    ccr,
    charging_app,
    drain,
    ledger_totals,
    live_totals,
    new_account,
    rg,
    seconds,
    send,
)

THRESHOLD = 10


@pytest.fixture
async def app(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    clock: ManualClock,
) -> AsyncIterator[ChargingApp]:
    async with charging_app(
        database, redis_client, redis_server.url, clock=clock, checkpoint_entries=THRESHOLD
    ) as running:
        yield running


def full_sums(app: ChargingApp, account: str) -> dict[str, int]:
    """Credits minus debits per bucket over the whole ledger (what a rebuild summed before)."""
    with app.uow() as uow:
        return uow.ledger.sums(account, 0, None)  # type: ignore[attr-defined, no-any-return]


def checkpoint_rows(app: ChargingApp, account: str) -> dict[str, tuple[int, int]]:
    c = orm.ledger_checkpoints
    with app.engine.connect() as connection:
        rows = connection.execute(
            select(c.c.bucket_id, c.c.amount, c.c.through_seq).where(c.c.account_id == account)
        ).all()
    return {r.bucket_id: (int(r.amount), int(r.through_seq)) for r in rows}


async def checkpoint(app: ChargingApp, clock: ManualClock) -> int:
    """Two passes: the first notes the newest seq, the second (after the settle delay,
    here the test's 200 ms rebuild fence) checkpoints through it."""
    written = await asyncio.to_thread(app.maintenance.checkpoint_once)
    clock.advance(timedelta(seconds=1))
    return written + await asyncio.to_thread(app.maintenance.checkpoint_once)


async def rebuilt(app: ChargingApp, account: str) -> dict[str, tuple[int, int]]:
    await app.redis.flushdb()
    await app.store.load()
    for _ in range(200):
        try:
            await app.handlers.balance(account)
            break
        except Unavailable:  # the rebuild fence
            await asyncio.sleep(0.02)
    return await live_totals(app, account)


async def test_a_rebuild_starts_from_the_checkpoint(app: ChargingApp, clock: ManualClock) -> None:
    account = "cp-1"
    await new_account(app, account, balance="10.00")
    minutes = await add_bucket(app, account, TIME, 6000, priority=1)
    for i in range(THRESHOLD):
        await app.handlers.top_up(TopUp(account, Quantity(money_unit("EUR"), 10_000 * (i + 1))))
    for i in range(5):
        name = f"cp-s{i}"
        await send(app, ccr(name, RequestType.INITIAL, 0, account, rg(VOICE, seconds(60))))
        await send(app, ccr(name, RequestType.TERMINATE, 1, account, rg(VOICE, used=seconds(90))))
    assert await checkpoint(app, clock) == 1
    rows = checkpoint_rows(app, account)
    assert set(rows) == {"main-EUR", minutes}
    assert {b: amount for b, (amount, _) in rows.items()} == full_sums(app, account)
    through = rows["main-EUR"][1]

    # Entries after the checkpoint: a session that is still open, a closed bucket's forfeit.
    opened = await send(
        app, ccr("cp-open", RequestType.INITIAL, 0, account, rg(VOICE, seconds(60)))
    )
    assert opened.result is ResultCode.SUCCESS
    await app.handlers.close_bucket(CloseBucket(account, minutes, "downgrade"))
    await drain(app, account)
    assert ledger_totals(app, account) == full_sums(app, account)

    # The rebuild reads the checkpoint, not the entries it covers: proven by skewing the
    # checkpoint (the old whole-ledger sum would not see it) and putting it back.
    c = orm.ledger_checkpoints
    with app.engine.begin() as connection:
        connection.execute(
            update(c)
            .where(c.c.account_id == account, c.c.bucket_id == "main-EUR")
            .values(amount=c.c.amount + 1_000_000)
        )
    skewed = await rebuilt(app, account)
    available, reserved = skewed["main-EUR"]
    assert available + reserved == full_sums(app, account)["main-EUR"] + 1_000_000
    with app.engine.begin() as connection:
        connection.execute(
            update(c)
            .where(c.c.account_id == account, c.c.bucket_id == "main-EUR")
            .values(amount=c.c.amount - 1_000_000)
        )
    live = await rebuilt(app, account)
    assert {b: a + r for b, (a, r) in live.items()} == {
        b: full_sums(app, account).get(b, 0) for b in live
    }
    # The open session's reservation is held again (ADR 0020).
    assert sum(reserved for _, reserved in live.values()) == 60
    assert checkpoint_rows(app, account)["main-EUR"][1] == through


async def test_a_checkpoint_waits_until_no_transaction_can_commit_below_it(
    app: ChargingApp, clock: ManualClock
) -> None:
    account = "cp-2"
    await new_account(app, account, balance="1.00")
    for _ in range(THRESHOLD):
        await app.handlers.top_up(TopUp(account, Quantity(money_unit("EUR"), 1)))
    # The first pass only notes the newest seq; without the settle delay nothing is covered.
    assert await asyncio.to_thread(app.maintenance.checkpoint_once) == 0
    assert await asyncio.to_thread(app.maintenance.checkpoint_once) == 0
    assert checkpoint_rows(app, account) == {}
    clock.advance(timedelta(seconds=1))
    assert await asyncio.to_thread(app.maintenance.checkpoint_once) == 1
    assert {b: a for b, (a, _) in checkpoint_rows(app, account).items()} == full_sums(app, account)
    # Accounts under the threshold are not checkpointed.
    await new_account(app, "cp-3", balance="1.00")
    assert await checkpoint(app, clock) == 0
    assert checkpoint_rows(app, "cp-3") == {}
