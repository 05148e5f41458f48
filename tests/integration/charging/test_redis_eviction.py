"""Charging refuses a Redis that may evict its keys (balances and answers lost silently)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.charging.adapters.redis_store import UnsafeBalanceStore
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import charging_app


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        (["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"], True),
        (["--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"], True),
        (["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"], False),
        (["--maxmemory-policy", "allkeys-lru"], False),  # no maxmemory: nothing is evicted
    ],
)
async def test_a_redis_that_may_evict_keys_is_refused_at_start(
    database: TestDatabase, tmp_path: Path, settings: list[str], refused: bool
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", extra_args=settings).start()
    client = aioredis.Redis.from_url(server.url)
    try:
        if refused:
            with pytest.raises(UnsafeBalanceStore, match="maxmemory-policy noeviction"):
                async with charging_app(database, client, server.url):
                    pass
        else:
            async with charging_app(database, client, server.url) as app:
                assert await app.store.read_account("nobody") is None
    finally:
        await client.aclose()
        server.stop()
