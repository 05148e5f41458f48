"""The accounts service started in-process for each test, on SQLite and PostgreSQL.

Each test gets a fresh database (``database`` fixture: a SQLite file or its own
PostgreSQL schema), the session's real Redis (flushed), the service bound to
127.0.0.1:0 and a stub that authenticates with the test token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, func, select

from reckon.accounts.v1 import accounts_pb2 as pb
from reckon.accounts.v1 import accounts_pb2_grpc
from services.accounts.adapters.orm import metadata
from services.accounts.bootstrap import RunningAccounts, running_service
from services.accounts.config import AccountsSettings
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.events import EventEnvelope
from services.common.grpc_client import open_channel
from tests.conftest import TEST_TOKEN, TestDatabase

STREAM = "reckon:events:accounts"


@dataclass
class Accounts:
    """A running accounts service and what a test needs to talk to and inspect it."""

    service: RunningAccounts
    stub: Any  # AccountsServiceAsyncStub
    channel: grpc.aio.Channel
    redis: aioredis.Redis
    database: TestDatabase
    engine: Engine
    clock: ManualClock

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    def row_counts(self) -> dict[str, int]:
        """Rows in every table of the service, to prove a failed call wrote nothing."""
        with self.engine.connect() as connection:
            return {
                name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in metadata.tables.items()
            }

    async def events(self) -> list[EventEnvelope]:
        entries: Any = await self.redis.xrange(STREAM)
        return [EventEnvelope.from_json(fields[b"envelope"]) for _, fields in entries]

    async def wait_for_events(self, count: int, within: float = 10.0) -> list[EventEnvelope]:
        found: list[EventEnvelope] = await wait_for(
            lambda: self._at_least(count), within, f"{count} events"
        )
        return found

    async def _at_least(self, count: int) -> list[EventEnvelope] | None:
        events = await self.events()
        return events if len(events) >= count else None

    # -- shortcuts to build a world through the API --------------------------------------
    async def customer(self, **fields: Any) -> pb.Customer:
        values: dict[str, Any] = {"display_name": "Ada Lovelace", "email": "ada@example.com"}
        values.update(fields)
        reply = await self.stub.CreateCustomer(
            pb.CreateCustomerRequest(customer=pb.Customer(**values))
        )
        return reply.customer  # type: ignore[no-any-return]

    async def account(self, customer_id: str | None = None, **fields: Any) -> pb.Account:
        values: dict[str, Any] = {
            "customer_id": customer_id or (await self.customer()).customer_id,
            "currency_code": "EUR",
            "time_zone": "Europe/Amsterdam",
            "bill_cycle_day": 1,
            "payment_mode": pb.PAYMENT_MODE_PREPAID,
        }
        values.update(fields)
        reply = await self.stub.CreateAccount(pb.CreateAccountRequest(account=pb.Account(**values)))
        return reply.account  # type: ignore[no-any-return]

    async def subscription(self, account_id: str, plan_code: str = "basic") -> pb.Subscription:
        reply = await self.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(account_id=account_id, plan_code=plan_code)
            )
        )
        return reply.subscription  # type: ignore[no-any-return]


async def wait_for(
    probe: Callable[[], Awaitable[Any]], within: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


def accounts_settings(database: TestDatabase, **overrides: Any) -> AccountsSettings:
    return load_settings(
        AccountsSettings,
        listen="127.0.0.1:0",
        database_url=database.url,
        database_schema=database.schema,
        shutdown_grace_seconds=0,
        **overrides,
    )


@pytest.fixture
async def accounts(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[Accounts]:
    clock = ManualClock(datetime.now(UTC))
    settings = accounts_settings(database)
    async with running_service(settings, clock=clock) as service:
        engine = make_engine(database.url, database.schema, instrument=False)
        channel = open_channel(f"127.0.0.1:{service.port}", TEST_TOKEN, traced=False)
        try:
            yield Accounts(
                service=service,
                stub=accounts_pb2_grpc.AccountsServiceStub(channel),
                channel=channel,
                redis=redis_client,
                database=database,
                engine=engine,
                clock=clock,
            )
        finally:
            await channel.close()
            engine.dispose()
