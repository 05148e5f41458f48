"""Helpers of charging's integration tests: a wired app on real Redis and SQL, shortcuts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import func, select

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.charging.adapters import orm
from services.charging.bootstrap import ChargingApp, bootstrap
from services.charging.config import ChargingSettings
from services.charging.domain.accounts import AccountPolicy, BillingMode
from services.charging.domain.credit_control import (
    CreditControlAnswer,
    CreditControlRequest,
    RatingGroupRequest,
    RequestedAction,
    RequestType,
)
from services.charging.domain.instants import to_ms
from services.charging.domain.services import Charging, ServiceDefinition
from services.charging.domain.units import (
    TIME,
    Quantity,
    Unit,
    UnitKind,
    money_unit,
    scaled_money,
    service_units,
)
from services.charging.service_layer.commands import CreateBucket, DefineService, SetPolicy, TopUp
from services.charging.service_layer.pricing import InMemoryPricing, Tariff
from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.grpc_client import open_channel
from services.common.money import Money
from services.rating.config import RatingSettings
from services.rating.entrypoints.main import RunningRating, start
from tests.conftest import TEST_TOKEN, TestDatabase

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VOICE, SMS, DATA, EMERGENCY, CONTENT = 1, 2, 3, 4, 5


def settings_for(database: TestDatabase, redis_url: str, **overrides: Any) -> ChargingSettings:
    values: dict[str, Any] = {
        "service_token": TEST_TOKEN,
        "redis_url": redis_url,
        "database_url": database.url,
        "database_schema": database.schema,
        "validity_seconds": 60,
        "grace_seconds": 10,
        "rebuild_fence_ms": 200,
        "ledger_stale_seconds": 5.0,
        "journal_drain_ms": 5_000,
        "index_shards": 4,
    }
    values.update(overrides)
    return ChargingSettings(**values)


def default_pricing() -> InMemoryPricing:
    # 0.10 EUR per started minute for voice, 0.05 EUR per SMS, 1 EUR per 100 MB of data.
    return InMemoryPricing(
        {
            "voice": Tariff(Money.of("0.10", "EUR"), per_units=60, increment=60),
            "sms": Tariff(Money.of("0.05", "EUR")),
            "data": Tariff(Money.of("1", "EUR"), per_units=100_000_000),
        }
    )


@asynccontextmanager
async def charging_app(
    database: TestDatabase,
    redis_client: aioredis.Redis | RedisCluster,
    redis_url: str,
    *,
    clock: ManualClock | None = None,
    in_memory_pricing: bool = True,
    **overrides: Any,
) -> AsyncIterator[ChargingApp]:
    """A started charging app; ``in_memory_pricing=False`` prices through the rating
    service at ``rating_addr`` (an override), as production does."""
    engine = make_engine(database.url, database.schema, instrument=False)
    app = bootstrap(
        settings_for(database, redis_url, **overrides),
        clock=clock or ManualClock(START),
        pricing=default_pricing() if in_memory_pricing else None,
        redis_client=redis_client,
        engine=engine,
        migrate=True,
    )
    app.owns_redis = False
    await app.start()
    try:
        await define_services(app)
        yield app
    finally:
        await app.close()
        engine.dispose()


async def define_services(app: ChargingApp) -> None:
    for definition in (
        ServiceDefinition(VOICE, "voice", UnitKind.TIME, charging=Charging.RATED),
        ServiceDefinition(SMS, "sms", UnitKind.SERVICE_UNITS, "sms", Charging.RATED),
        ServiceDefinition(DATA, "data", UnitKind.VOLUME, charging=Charging.RATED),
        ServiceDefinition(EMERGENCY, "emergency", UnitKind.TIME, charging=Charging.FREE),
        ServiceDefinition(CONTENT, "content", UnitKind.MONEY, charging=Charging.RATED),
    ):
        await app.handlers.define_service(DefineService(definition))


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


async def new_account(
    app: ChargingApp,
    account_id: str,
    *,
    mode: BillingMode = BillingMode.PREPAID,
    balance: str | None = None,
    credit_limit: str = "0",
    low_balance: str | None = None,
) -> None:
    policy = AccountPolicy(
        account_id,
        mode,
        "EUR",
        credit_limit=scaled_money(eur(credit_limit)),
        low_balance=scaled_money(eur(low_balance)) if low_balance is not None else None,
    )
    await app.handlers.set_policy(SetPolicy(policy))
    if balance is not None and Decimal(balance) > 0:
        await app.handlers.top_up(TopUp(account_id, Quantity.of_money(eur(balance))))


async def add_bucket(
    app: ChargingApp, account_id: str, unit: Unit, amount: int, **fields: Any
) -> str:
    line = await app.handlers.create_bucket(CreateBucket(account_id, unit, amount, **fields))
    return line.bucket.bucket_id


def seconds(n: int) -> Quantity:
    return Quantity(TIME, n)


def sms(n: int) -> Quantity:
    return Quantity(service_units("sms"), n)


def money(amount: str) -> Quantity:
    return Quantity(money_unit("EUR"), scaled_money(eur(amount)))


def ccr(
    session: str,
    kind: RequestType,
    number: int,
    account: str,
    *groups: RatingGroupRequest,
    action: RequestedAction | None = None,
) -> CreditControlRequest:
    return CreditControlRequest(session, kind, number, account, tuple(groups), action)


def rg(
    group: int, requested: Quantity | None = None, used: Quantity | None = None
) -> RatingGroupRequest:
    return RatingGroupRequest(group, requested, used)


async def send(app: ChargingApp, request: CreditControlRequest) -> CreditControlAnswer:
    return await app.handlers.credit_control(request)


async def live_totals(app: ChargingApp, account_id: str) -> dict[str, tuple[int, int]]:
    """bucket -> (available, reserved) as Redis holds them."""
    view = await app.store.read_account(account_id)
    assert view is not None
    return {b.bucket_id: (b.available, b.reserved) for b in view.buckets}


def ledger_totals(app: ChargingApp, account_id: str) -> dict[str, int]:
    with app.uow() as uow:
        return uow.ledger.balances(account_id)


def ledger_count(app: ChargingApp, account_id: str) -> int:
    with app.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(orm.ledger_entries)
                .where(orm.ledger_entries.c.account_id == account_id)
            ).scalar_one()
        )


def outbox_events(app: ChargingApp) -> list[tuple[str, dict[str, object]]]:
    """(event type, payload) of every event charging published, in order."""
    with app.engine.connect() as connection:
        rows = connection.execute(
            select(orm.kit.outbox.c.event_type, orm.kit.outbox.c.envelope).order_by(
                orm.kit.outbox.c.seq
            )
        ).all()
    return [(r.event_type, json.loads(r.envelope)["payload"]) for r in rows]


async def drain(app: ChargingApp, account_id: str) -> None:
    """Commit whatever journal entries Redis still holds (what the reconciler does)."""
    result = await app.store.sweep(
        account_id, {"now": to_ms(app.clock.now()), "win": 3600, "jd": 5000, "limit": 1000}
    )
    await app.writer.commit(result.entries)


@asynccontextmanager
async def running_rating(
    redis_url: str, tmp_path: Path, catalog: str
) -> AsyncIterator[RunningRating]:
    """A real rating service on a free port with ``catalog`` applied, for charging to
    price money-rated services through (RAT-8)."""
    settings = RatingSettings(
        service_token=SecretStr(TEST_TOKEN),
        redis_url=redis_url,
        data_dir=tmp_path / "rating-data",
        listen="127.0.0.1:0",
        database_url=f"sqlite:///{tmp_path / 'rating.db'}",
    )
    client = aioredis.Redis.from_url(redis_url)
    running = await start(settings, redis_client=client, background=False)
    try:
        async with open_channel(running.address, TEST_TOKEN, traced=False) as channel:
            await rating_pb2_grpc.RatingServiceStub(channel).ApplyCatalog(
                rating_pb2.ApplyCatalogRequest(document=catalog, source_name="test.yaml")
            )
        yield running
    finally:
        await running.stop(0)
