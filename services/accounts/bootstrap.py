"""The composition root of the accounts service: the one place real adapters are wired.

``start`` builds everything from settings and starts it: the SQL engine
(migrated when ``migrate_on_start``), the unit-of-work factory (its commits wake
the outbox relay), the Redis client, the outbox relay, the referral consumer,
the scheduler of due subscription changes, the plan catalog (rating's, when
``RATING_ADDR`` is set) and the gRPC server hosting the servicer. Tests start
the whole service in-process on port 0 with ``running_service`` (optionally
with their own clock or plan catalog); ``run`` serves until SIGINT/SIGTERM for
``python -m services.accounts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reckon.accounts.v1 import accounts_pb2_grpc
from services.accounts.adapters.orm import kit
from services.accounts.adapters.rating_catalog import RatingPlanCatalog
from services.accounts.adapters.unit_of_work import SqlAccountsUnitOfWork, session_factory
from services.accounts.config import AccountsSettings
from services.accounts.entrypoints.event_consumers import referrals_consumer
from services.accounts.entrypoints.grpc_servicer import SERVICE_NAME, AccountsServicer
from services.accounts.entrypoints.scheduler import DueChangesScheduler
from services.accounts.service_layer.plan_catalog import PlanCatalog, WellFormedPlanCatalog
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.clock import Clock, clock_from_config, close_clock
from services.common.db import make_engine
from services.common.grpc_server import RunningServer, ServiceBinding, create_server, serve
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.common.streams import StreamConsumer

log = logging.getLogger(__name__)

MIGRATIONS = "services.accounts.adapters.migrations"
# Background tasks get this long to finish after stop is signalled; a consumer
# blocked in XREADGROUP is then cancelled, which loses nothing: an unacknowledged
# message is delivered again.
_BACKGROUND_STOP_SECONDS = 0.5


@dataclass
class AccountsApp:
    """The wired components of one accounts process."""

    settings: AccountsSettings
    clock: Clock
    engine: Engine
    uow_factory: Callable[[], AccountsUnitOfWork]
    redis: aioredis.Redis
    relay: OutboxRelay
    referrals: StreamConsumer
    scheduler: DueChangesScheduler
    servicer: AccountsServicer
    # The rating-backed catalog this app opened (and closes); None when given or unchecked.
    rating_catalog: RatingPlanCatalog | None = None

    def close_clients(self) -> None:
        close_clock(self.clock)
        if self.rating_catalog is not None:
            self.rating_catalog.close()


@dataclass
class RunningAccounts:
    """A started accounts service: its server, bound port and background tasks."""

    app: AccountsApp
    server: RunningServer
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closed: bool = False

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        host = self.app.settings.listen.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop the server, then the background tasks and connections."""
        await self.server.drain(
            self.app.settings.shutdown_grace_seconds if grace is None else grace
        )
        await self.stop_background()

    async def stop_background(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=_BACKGROUND_STOP_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.app.redis.aclose()
        self.app.close_clients()
        await asyncio.to_thread(self.app.engine.dispose)


def open_database(settings: AccountsSettings) -> tuple[Engine, sessionmaker[Session]]:
    """The engine (migrated to head if configured) and the session factory; blocking."""
    engine = make_engine(settings.effective_database_url, settings.effective_database_schema)
    if settings.migrate_on_start:
        upgrade_to_head(engine, MIGRATIONS)
    return engine, session_factory(engine)


def plan_catalog(settings: AccountsSettings, clock: Clock) -> PlanCatalog:
    """Rating's catalog when ``RATING_ADDR`` is set, else one that checks the shape only."""
    if settings.rating_addr is None:
        log.warning(
            "RATING_ADDR is not set: plan codes are not checked against a catalog; "
            "any well-formed code is accepted"
        )
        return WellFormedPlanCatalog()
    log.info("plan codes are checked against the rating service at %s", settings.rating_addr)
    return RatingPlanCatalog.connect(
        settings.rating_addr,
        settings.service_token.get_secret_value(),
        clock=clock,
        timeout_seconds=settings.plan_catalog_timeout_seconds,
        cache_seconds=settings.plan_catalog_cache_seconds,
    )


async def build(
    settings: AccountsSettings,
    *,
    clock: Clock | None = None,
    catalog: PlanCatalog | None = None,
) -> AccountsApp:
    clock = clock or clock_from_config(settings)
    engine, sessions = await asyncio.to_thread(open_database, settings)
    client = connect(settings.redis_url)
    relay = OutboxRelay(engine, kit.outbox, client, clock, retention=settings.outbox_retention)
    owned: RatingPlanCatalog | None = None
    if catalog is None:
        catalog = plan_catalog(settings, clock)
        owned = catalog if isinstance(catalog, RatingPlanCatalog) else None

    def uow_factory() -> AccountsUnitOfWork:
        return SqlAccountsUnitOfWork(sessions, clock=clock, after_commit=relay.notify)

    return AccountsApp(
        settings=settings,
        clock=clock,
        engine=engine,
        uow_factory=uow_factory,
        redis=client,
        relay=relay,
        referrals=referrals_consumer(
            client, uow_factory, claim_idle_ms=settings.referrals_claim_idle_ms
        ),
        scheduler=DueChangesScheduler(
            uow_factory,
            clock=clock,
            interval_seconds=settings.due_changes_interval_seconds,
            batch_size=settings.due_changes_batch_size,
        ),
        servicer=AccountsServicer(uow_factory, catalog),
        rating_catalog=owned,
    )


async def start(
    settings: AccountsSettings,
    *,
    clock: Clock | None = None,
    catalog: PlanCatalog | None = None,
) -> RunningAccounts:
    """Build the service, bind its server (``listen`` may use port 0) and start its tasks."""
    app = await build(settings, clock=clock, catalog=catalog)
    try:
        await app.referrals.ensure_groups()
        server = await create_server(
            service_name=settings.service_name,
            listen=settings.listen,
            service_token=settings.service_token.get_secret_value(),
            bindings=[
                ServiceBinding(
                    SERVICE_NAME,
                    accounts_pb2_grpc.add_AccountsServiceServicer_to_server,
                    app.servicer,
                )
            ],
        )
    except BaseException:
        await app.redis.aclose()
        app.close_clients()
        app.engine.dispose()
        raise
    service = RunningAccounts(app=app, server=server)
    service._tasks = [
        asyncio.create_task(app.relay.run(service._stop), name="accounts-outbox-relay"),
        asyncio.create_task(app.referrals.run(service._stop), name="accounts-referrals"),
        asyncio.create_task(app.scheduler.run(service._stop), name="accounts-due-changes"),
    ]
    return service


@contextlib.asynccontextmanager
async def running_service(
    settings: AccountsSettings,
    *,
    clock: Clock | None = None,
    catalog: PlanCatalog | None = None,
) -> AsyncIterator[RunningAccounts]:
    """The whole service started in-process, stopped on exit (for tests and tools)."""
    service = await start(settings, clock=clock, catalog=catalog)
    try:
        yield service
    finally:
        await service.stop(grace=0)


async def run(settings: AccountsSettings) -> None:
    """Serve until SIGINT/SIGTERM, then drain calls and stop the background tasks."""
    service = await start(settings)
    log.info("accounts serving on %s", service.address)
    await serve(
        service.server,
        grace=settings.shutdown_grace_seconds,
        on_stop=[service.stop_background],
    )
