"""Fixtures of charging's integration tests: the app on a real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.charging.bootstrap import ChargingApp
from services.common.clock import ManualClock
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import START, charging_app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def app(
    database: TestDatabase,
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    clock: ManualClock,
) -> AsyncIterator[ChargingApp]:
    async with charging_app(database, redis_client, redis_server.url, clock=clock) as running:
        yield running
