"""Balances in a Redis of their own, the event bus on the suite's Redis (ADR 0059).

Production shards balances over a Redis Cluster while the other services, whose
clients speak plain Redis, share the bus: charging must keep each kind of key on
its own server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.charging.config import ChargingSettings
from services.charging.domain.credit_control import RequestedAction, RequestType
from services.common.clock import ManualClock
from services.common.events import stream_for
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    START,
    VOICE,
    ccr,
    charging_app,
    drain,
    new_account,
    outbox_events,
    rg,
    seconds,
    send,
)

EVENT = RequestType.EVENT


@pytest.fixture
def bus_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "bus").start()
    yield server
    server.stop()


async def _keys(client: aioredis.Redis, pattern: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=pattern)]


async def test_balances_and_events_each_live_on_their_own_redis(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    bus_server: EmbeddedRedis,
) -> None:
    balances = redis_client
    await balances.flushall()
    bus = aioredis.Redis.from_url(bus_server.url)
    try:
        async with charging_app(
            database,
            balances,
            bus_server.url,
            clock=ManualClock(START),
            balance_redis_url=redis_server.url,
        ) as app:
            assert app.bus is not app.redis
            await new_account(app, "acct-split", balance="1.00", low_balance="0.95")
            # A priced use takes the balance under its low mark: BalanceLow is published.
            await send(
                app,
                ccr(
                    "split-1",
                    EVENT,
                    0,
                    "acct-split",
                    rg(VOICE, seconds(120)),
                    action=RequestedAction.DIRECT_DEBITING,
                ),
            )
            await drain(app, "acct-split")
            assert "BalanceLow" in [kind for kind, _ in outbox_events(app)]
            moved = await app.relay.relay_once()
            assert moved == len(outbox_events(app))
            # Charging's events reached the bus, where the other services read them...
            assert await _keys(bus, "reckon:events:charging*")
            # ...and its consumers read the other services' streams there.
            app.start_background(asyncio.Event())
            groups: list[dict[str, object]] = []
            for _ in range(100):
                if await bus.exists(stream_for("accounts")):
                    groups = await bus.xinfo_groups(stream_for("accounts"))
                    if groups:
                        break
                await asyncio.sleep(0.05)
            assert groups
            assert not await balances.exists(stream_for("accounts"))
            # The balance itself lives only on the balances' Redis.
            assert await _keys(balances, "*acct-split*")
            assert not await _keys(bus, "*acct-split*")
            assert not await _keys(balances, "reckon:events:*")
    finally:
        await bus.aclose()


def test_balance_redis_url_must_be_a_redis_url(database: TestDatabase) -> None:
    with pytest.raises(ValueError, match="redis://"):
        ChargingSettings.model_validate(
            {
                "service_token": "t" * 16,
                "redis_url": "redis://127.0.0.1:1/0",
                "balance_redis_url": "http://nope",
            }
        )
