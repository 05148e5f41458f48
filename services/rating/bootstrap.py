"""The composition root of the rating service: the one place real adapters are wired in.

``bootstrap`` turns settings into a ``RatingApp``: the SQL engine (migrated),
the unit-of-work factory with the transactional outbox, the compiled-tariff
cache, the usage importer, the outbox relay, the accounts-event consumer and
the drop folder. Tests pass their own clock and Redis client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock, clock_from_config, close_clock
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.common.streams import StreamConsumer
from services.rating.adapters import orm
from services.rating.adapters.accounts_events import accounts_consumer
from services.rating.adapters.drop_folder import DropFolder
from services.rating.adapters.unit_of_work import SqlRatingUnitOfWork
from services.rating.config import RatingSettings
from services.rating.service_layer.imports import ImportLimits, RatingMetrics, UsageImporter
from services.rating.service_layer.tariffs import TariffCache

MIGRATIONS = "services.rating.adapters.migrations"
# Outbox rows per relay pass. A UsageRated envelope holds up to 1,000 records (~300 KB),
# and a file's events reach the outbox together when it ends (held until then, ADR 0042):
# small passes keep the relay's memory flat however large the file.
RELAY_BATCH = 16


@dataclass
class RatingApp:
    settings: RatingSettings
    clock: Clock
    engine: Engine
    uow_factory: Callable[[], SqlRatingUnitOfWork]
    tariffs: TariffCache
    limits: ImportLimits
    metrics: RatingMetrics
    importer: UsageImporter
    redis: aioredis.Redis
    relay: OutboxRelay
    accounts_consumer: StreamConsumer
    drop_folder: DropFolder | None
    spool_dir: Path

    def close(self) -> None:
        close_clock(self.clock)
        self.engine.dispose()


def bootstrap(
    settings: RatingSettings,
    *,
    clock: Clock | None = None,
    redis_client: aioredis.Redis | None = None,
) -> RatingApp:
    clock = clock or clock_from_config(settings)
    orm.start_mappers()
    engine = make_engine(settings.effective_database_url, settings.effective_database_schema)
    if settings.migrate_on_start:
        upgrade_to_head(engine, MIGRATIONS)
    client = redis_client or connect(settings.redis_url)
    relay = OutboxRelay(
        engine,
        orm.kit.outbox,
        client,
        clock,
        batch_size=RELAY_BATCH,
        retention=settings.outbox_retention,
    )
    sessions = sessionmaker(engine, class_=Session, expire_on_commit=False)

    def uow_factory() -> SqlRatingUnitOfWork:
        return SqlRatingUnitOfWork(
            sessions, orm.kit, source="rating", clock=clock, after_commit=relay.notify
        )

    settings.effective_spool_dir.mkdir(parents=True, exist_ok=True)
    tariffs = TariffCache(uow_factory)
    limits = ImportLimits(
        batch_size=settings.batch_size,
        max_line_bytes=settings.max_line_bytes,
        max_field_chars=settings.max_field_chars,
        future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
        reject_threshold_percent=settings.reject_threshold_percent,
        reject_threshold_min_records=settings.reject_threshold_min_records,
    )
    metrics = RatingMetrics()
    importer = UsageImporter(uow_factory, tariffs, clock, limits, metrics)
    drop = (
        DropFolder(
            settings.drop_dir,
            importer,
            preset=settings.drop_preset,
            poll_seconds=settings.drop_poll_seconds,
        )
        if settings.drop_dir is not None
        else None
    )
    return RatingApp(
        settings=settings,
        clock=clock,
        engine=engine,
        uow_factory=uow_factory,
        tariffs=tariffs,
        limits=limits,
        metrics=metrics,
        importer=importer,
        redis=client,
        relay=relay,
        accounts_consumer=accounts_consumer(client, uow_factory, clock),
        drop_folder=drop,
        spool_dir=settings.effective_spool_dir,
    )
