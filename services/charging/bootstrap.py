"""The one composition root of charging: real adapters wired into the use cases.

``bootstrap`` builds everything from settings (or from what a test passes in:
a clock, a pricing, a Redis client, an engine) and ``ChargingApp.start`` loads
the Lua scripts and the rating groups. Background work (sweeper, backstop scan,
maintenance, outbox relay, event consumers) is returned by ``background`` so the
process decides where it runs: with several worker processes only the first
runs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.charging.adapters import orm
from services.charging.adapters.rating_pricing import RatingPricing
from services.charging.adapters.redis_store import RedisBalanceStore, RedisClient
from services.charging.adapters.repositories import SqlChargingUnitOfWork
from services.charging.adapters.sql_ledger import SqlLedgerWriter
from services.charging.config import ChargingSettings
from services.charging.service_layer.catalog import ServiceCatalog
from services.charging.service_layer.consumers import (
    ACCOUNT_EVENTS,
    STATE_CONSUMER,
    USAGE_CONSUMER,
    USAGE_EVENTS,
    AccountStateConsumer,
    UsageConsumer,
)
from services.charging.service_layer.handlers import ChargingHandlers, Options
from services.charging.service_layer.ports import Pricing
from services.charging.service_layer.pricing import InMemoryPricing, tariffs_from_json
from services.charging.service_layer.rebuild import AccountLoader
from services.charging.service_layer.supervision import Maintenance, Sweeper, every
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock, clock_from_config, close_clock
from services.common.db import is_sqlite, make_engine
from services.common.events import stream_for
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.streams import StreamConsumer

MIGRATIONS = "services.charging.adapters.migrations"

log = logging.getLogger(__name__)


def connect_redis(settings: ChargingSettings) -> RedisClient:
    """The Redis of balances and reservations: its own when CHARGING_BALANCE_REDIS_URL
    names one (a Redis Cluster with CHARGING_REDIS_CLUSTER), else the suite's REDIS_URL."""
    url = settings.balance_redis_url or settings.redis_url
    if settings.redis_cluster:
        return RedisCluster.from_url(url)
    return aioredis.Redis.from_url(url, health_check_interval=30)


def connect_bus(settings: ChargingSettings, balances: RedisClient) -> tuple[aioredis.Redis, bool]:
    """The event bus (outbox relay, consumers): the suite's REDIS_URL, shared with the
    other services. The balances' client serves it when both are one Redis (ADR 0059)."""
    if settings.balance_redis_url:
        return aioredis.Redis.from_url(settings.redis_url, health_check_interval=30), True
    # A cluster client serves the same single-key stream commands.
    return cast(aioredis.Redis, balances), False


@dataclass
class ChargingApp:
    settings: ChargingSettings
    clock: Clock
    engine: Engine
    redis: RedisClient
    store: RedisBalanceStore
    writer: SqlLedgerWriter
    pricing: Pricing
    catalog: ServiceCatalog
    loader: AccountLoader
    handlers: ChargingHandlers
    sweeper: Sweeper
    maintenance: Maintenance
    relay: OutboxRelay
    usage: UsageConsumer
    states: AccountStateConsumer
    bus: aioredis.Redis
    owns_redis: bool = True
    owns_bus: bool = False
    owns_pricing: bool = False
    owns_engine: bool = True
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event | None = None

    def uow(self) -> ChargingUnitOfWork:
        return self.handlers.uow_factory()

    async def start(self) -> None:
        await self.store.check_eviction()
        await self.store.load()
        await self.catalog.reload()

    def background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        s = self.settings
        client = self.bus
        usage = StreamConsumer(
            client,
            group=USAGE_CONSUMER,
            streams=[stream_for("rating")],
            handler=self.usage.handle,
            event_types=USAGE_EVENTS,
        )
        states = StreamConsumer(
            client,
            group=STATE_CONSUMER,
            streams=[stream_for("accounts")],
            handler=self.states.handle,
            event_types=ACCOUNT_EVENTS,
        )
        return [
            every(s.sweep_interval_seconds, stop, self.sweeper.sweep_once, "sweep", self.clock),
            every(
                s.backstop_interval_seconds,
                stop,
                self.sweeper.backstop_once,
                "backstop",
                self.clock,
            ),
            every(
                s.maintenance_interval_seconds,
                stop,
                self.maintenance.run_once,
                "maintenance",
                self.clock,
            ),
            self.relay.run(stop),
            usage.run(stop),
            states.run(stop),
        ]

    def start_background(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._tasks = [asyncio.ensure_future(c) for c in self.background(stop)]

    async def close(self) -> None:
        # Loops end when asked (stop); cancelling is the fallback, as redis-py may
        # swallow a cancellation raised inside its I/O.
        if self._stop is not None:
            self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        self._tasks = []
        await self.writer.close()
        await self.store.aclose()
        if self.owns_pricing and isinstance(self.pricing, RatingPricing):
            await self.pricing.close()
        if self.owns_redis:
            await self.redis.aclose()
        if self.owns_bus:
            await self.bus.aclose()
        if self.owns_engine:
            self.engine.dispose()
        close_clock(self.clock)


def bootstrap(
    settings: ChargingSettings,
    *,
    clock: Clock | None = None,
    pricing: Pricing | None = None,
    redis_client: RedisClient | None = None,
    engine: Engine | None = None,
    migrate: bool | None = None,
) -> ChargingApp:
    clock = clock or clock_from_config(settings)
    owns_engine = engine is None
    if engine is None:
        engine = make_engine(
            settings.effective_database_url, settings.effective_database_schema, pool_size=20
        )
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade_to_head(engine, MIGRATIONS)
    owns_redis = redis_client is None
    redis = redis_client if redis_client is not None else connect_redis(settings)
    store = RedisBalanceStore(
        redis, shards=settings.index_shards, wait_turns=settings.batch_wait_turns
    )
    bus, owns_bus = connect_bus(settings, redis)
    relay = OutboxRelay(
        engine,
        orm.kit.outbox,
        bus,
        clock,
        retention=settings.outbox_retention,
    )
    session_factory = sessionmaker(engine, class_=Session, expire_on_commit=False)

    def uow_factory() -> ChargingUnitOfWork:
        return SqlChargingUnitOfWork(
            session_factory, orm.kit, source="charging", clock=clock, after_commit=relay.notify
        )

    writer = SqlLedgerWriter(
        engine,
        store,
        clock,
        stale_after=settings.ledger_stale_seconds,
        transaction_timeout_ms=settings.ledger_timeout_ms,
        wait_turns=settings.batch_wait_turns,
        # Inline commits on SQLite only without sibling workers: another process holding
        # the file's write lock would stall the event loop (busy_timeout).
        inline=is_sqlite(engine) and settings.workers == 1,
        after_commit=relay.notify,
    )
    owns_pricing = pricing is None
    if pricing is None:
        pricing = default_pricing(settings)
    catalog = ServiceCatalog(uow_factory)
    loader = AccountLoader(
        store,
        uow_factory,
        clock,
        fence_ms=settings.rebuild_fence_ms,
        window_s=settings.idempotency_window_seconds,
        hold_s=settings.validity_seconds + settings.grace_seconds,
    )
    options = Options(
        validity_seconds=settings.validity_seconds,
        grace_seconds=settings.grace_seconds,
        default_quota_time=settings.default_quota_time_seconds,
        default_quota_volume=settings.default_quota_volume_bytes,
        default_quota_units=settings.default_quota_units,
        window_seconds=settings.idempotency_window_seconds,
        journal_drain_ms=settings.journal_drain_ms,
        voucher_key=settings.voucher_key,
        remembered_sessions=settings.remembered_sessions,
        subscriber_cache_seconds=settings.subscriber_cache_seconds,
    )
    handlers = ChargingHandlers(
        store=store,
        writer=writer,
        pricing=pricing,
        uow_factory=uow_factory,
        catalog=catalog,
        loader=loader,
        clock=clock,
        options=options,
    )
    sweeper = Sweeper(
        store,
        writer,
        clock,
        window_s=settings.idempotency_window_seconds,
        journal_drain_ms=settings.journal_drain_ms,
        lease_ms=settings.sweep_lease_ms,
        batch=settings.sweep_batch,
    )
    maintenance = Maintenance(
        handlers,
        uow_factory,
        catalog,
        clock,
        warning=timedelta(hours=settings.bucket_expiry_warning_hours),
        checkpoint_entries=settings.checkpoint_entries,
        # The fence already bounds how long a ledger transaction can still commit.
        settle_delay=timedelta(milliseconds=settings.rebuild_fence_ms),
    )
    usage = UsageConsumer(
        handlers,
        store,
        uow_factory,
        clock,
        window_s=settings.idempotency_window_seconds,
        journal_drain_ms=settings.journal_drain_ms,
    )
    states = AccountStateConsumer(store, loader, uow_factory, clock, handlers)
    return ChargingApp(
        settings=settings,
        clock=clock,
        engine=engine,
        redis=redis,
        store=store,
        writer=writer,
        pricing=pricing,
        catalog=catalog,
        loader=loader,
        handlers=handlers,
        sweeper=sweeper,
        maintenance=maintenance,
        relay=relay,
        usage=usage,
        states=states,
        bus=bus,
        owns_redis=owns_redis,
        owns_bus=owns_bus,
        owns_engine=owns_engine,
        owns_pricing=owns_pricing,
    )


def default_pricing(settings: ChargingSettings) -> Pricing:
    """Rating's prices when ``RATING_ADDR`` is set, else the in-memory tariffs."""
    if settings.rating_addr is None:
        log.warning(
            "RATING_ADDR is not set: money-priced services use the in-memory tariffs "
            "(CHARGING_TARIFFS), not the rating service's catalog"
        )
        raw = json.loads(settings.tariffs) if settings.tariffs.strip() else {}
        return InMemoryPricing(tariffs_from_json(raw))
    log.info("money-priced services are priced by the rating service at %s", settings.rating_addr)
    return RatingPricing.connect(
        settings.rating_addr,
        settings.service_token.get_secret_value(),
        timeout_seconds=settings.rating_timeout_seconds,
    )
