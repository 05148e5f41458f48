"""Fixtures for the rating service's integration tests: the service in-process on a free
port, on SQLite and PostgreSQL, with a real Redis and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.clock import ManualClock
from services.common.events import EventEnvelope
from services.common.grpc_client import open_channel
from services.common.ids import new_id
from services.rating.config import RatingSettings
from services.rating.entrypoints.main import RunningRating, start
from services.rating.service_layer.accounts_view import apply_account_event
from suite.redis_server import EmbeddedRedis
from tests.conftest import TEST_TOKEN, TestDatabase

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
# Wednesday 2026-03-11, after the sample CDRs (2 March) and before anything "future".
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def rating(
    database: TestDatabase, redis_server: EmbeddedRedis, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[RunningRating]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    settings = RatingSettings(
        service_token=SecretStr(TEST_TOKEN),
        redis_url=redis_server.url,
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        database_url=database.url,
        database_schema=database.schema,
        drop_dir=tmp_path / "drop",
        batch_size=3,  # small batches: several transactions even in small files
    )
    running = await start(settings, clock=clock, redis_client=client, background=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def stub(rating: RunningRating) -> AsyncIterator[rating_pb2_grpc.RatingServiceStub]:
    async with open_channel(rating.address, TEST_TOKEN, traced=False) as channel:
        yield rating_pb2_grpc.RatingServiceStub(channel)


def account_event(
    event_type: str,
    payload: dict[str, Any],
    occurred_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> EventEnvelope:
    return EventEnvelope(
        event_id=new_id("evt"),
        event_type=event_type,
        source="accounts",
        aggregate_id=str(payload.get("account_id", "")),
        occurred_at=occurred_at,
        payload=payload,
    )


def add_account(
    rating: RunningRating,
    account_id: str,
    *,
    plan: str = "conference-pro",
    time_zone: str = "Europe/Amsterdam",
    tax_region: str = "NL",
    customer_id: str = "cus_demo",
    since: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> None:
    """Feed rating's account view the way the accounts service's events do."""
    app = rating.app
    created = {
        "account_id": account_id,
        "customer_id": customer_id,
        "reseller_id": "",
        "group_id": "",
        "currency_code": "EUR",
        "time_zone": time_zone,
        "bill_cycle_day": 1,
        "tax_region": tax_region,
        "state": "ACTIVE",
    }
    subscribed = {
        "subscription_id": f"sub_{account_id}",
        "account_id": account_id,
        "customer_id": customer_id,
        "kind": "CREATED",
        "plan_code": plan,
        "old_plan_code": plan,
        "new_plan_code": plan,
        "effective_time": since.isoformat(),
    }
    apply_account_event(app.uow_factory, app.clock, account_event("AccountCreated", created))
    apply_account_event(
        app.uow_factory, app.clock, account_event("SubscriptionChanged", subscribed)
    )


async def apply_sample_catalog(stub: rating_pb2_grpc.RatingServiceStub) -> int:
    reply = await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(
            document=(SAMPLES / "catalog.yaml").read_text(encoding="utf-8"),
            source_name="catalog.yaml",
        )
    )
    return int(reply.revision)


async def upload(
    stub: rating_pb2_grpc.RatingServiceStub,
    name: str,
    data: bytes,
    options: rating_pb2.UsageFileOptions | None = None,
    *,
    chunk: int = 7,
    request_id: str = "",
) -> rating_pb2.ImportFile:
    """Send a usage file in small chunks, as the CLI does in big ones."""

    def messages() -> Iterator[rating_pb2.ImportUsageRequest]:
        yield rating_pb2.ImportUsageRequest(
            file_name=name, options=options, request_id=request_id, chunk=data[:chunk]
        )
        for start_at in range(chunk, len(data), chunk):
            yield rating_pb2.ImportUsageRequest(chunk=data[start_at : start_at + chunk])

    reply: rating_pb2.ImportUsageResponse = await stub.ImportUsage(messages())
    return reply.file
