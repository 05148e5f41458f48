"""The composition root of the dunning service: the one place real adapters are wired.

``start`` builds everything from settings and starts it: the SQL engine (migrated
when ``migrate_on_start``), the clock (the suite's test clock in test-clock mode),
the unit-of-work factory (its commits wake the outbox relay and the effects loop),
Redis, the outbox relay, the projection consumer, the run workers, the daily
scheduler, the effects loop with the accounts and invoicing clients (when their
addresses are set) and the collections export, and the gRPC server. Tests start the
whole service in-process on port 0 with ``running_service`` (optionally with their
own clock and ports); ``run`` serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from sqlalchemy import Engine

from reckon.dunning.v1 import dunning_pb2_grpc
from services.common.clock import Clock, clock_from_config, close_clock
from services.common.db import make_engine
from services.common.grpc_server import RunningServer, ServiceBinding, create_server, serve
from services.common.heap import settle_heap
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.common.streams import StreamConsumer
from services.dunning.adapters.clients import CsvCollectionsExport, GrpcAccounts, GrpcInvoicing
from services.dunning.adapters.orm import kit
from services.dunning.adapters.unit_of_work import SqlDunningUnitOfWork, session_factory
from services.dunning.config import DunningSettings
from services.dunning.entrypoints.event_consumers import projection_consumer, work_consumer
from services.dunning.entrypoints.grpc_servicer import SERVICE_NAME, DunningServicer
from services.dunning.entrypoints.scheduler import DailyScheduler, EffectsLoop
from services.dunning.service_layer.effects import Effects
from services.dunning.service_layer.unit_of_work import (
    AccountsPort,
    DunningUnitOfWork,
    InvoicingPort,
)

log = logging.getLogger(__name__)

MIGRATIONS = "services.dunning.adapters.migrations"
_BACKGROUND_STOP_SECONDS = 0.5


@dataclass
class DunningApp:
    settings: DunningSettings
    clock: Clock
    engine: Engine
    uow_factory: Callable[[], DunningUnitOfWork]
    redis: aioredis.Redis
    relay: OutboxRelay
    projection: StreamConsumer
    workers: StreamConsumer
    scheduler: DailyScheduler
    effects: Effects
    effects_loop: EffectsLoop
    servicer: DunningServicer
    owned_clients: list[GrpcAccounts | GrpcInvoicing] = field(default_factory=list)
    owns_clock: bool = False

    def close_clients(self) -> None:
        for client in self.owned_clients:
            client.close()
        if self.owns_clock:
            close_clock(self.clock)


@dataclass
class RunningDunning:
    app: DunningApp
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
        await self.server.set_serving(False)
        await self.server.server.stop(
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


async def build(
    settings: DunningSettings,
    *,
    clock: Clock | None = None,
    accounts: AccountsPort | None = None,
    invoicing: InvoicingPort | None = None,
) -> DunningApp:
    owns_clock = clock is None
    clock = clock or clock_from_config(settings)
    engine = make_engine(settings.effective_database_url, settings.effective_database_schema)
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_to_head, engine, MIGRATIONS)
    sessions = session_factory(engine)
    client = connect(settings.redis_url)
    relay = OutboxRelay(engine, kit.outbox, client, clock, retention=settings.outbox_retention)
    owned: list[GrpcAccounts | GrpcInvoicing] = []
    token = settings.service_token.get_secret_value()
    if accounts is None and settings.accounts_addr:
        accounts = GrpcAccounts(settings.accounts_addr, token)
        owned.append(accounts)
    if invoicing is None and settings.invoicing_addr:
        invoicing = GrpcInvoicing(settings.invoicing_addr, token)
        owned.append(invoicing)
    if accounts is None:
        log.warning("ACCOUNTS_ADDR is not set: suspend/bar/restore reactions stay PENDING")
    if invoicing is None:
        log.warning("INVOICING_ADDR is not set: late fees and interest stay PENDING")
    loop_holder: list[EffectsLoop] = []

    def after_commit() -> None:
        relay.notify()
        for effects_loop in loop_holder:
            effects_loop.notify()

    def uow_factory() -> DunningUnitOfWork:
        return SqlDunningUnitOfWork(sessions, clock=clock, after_commit=after_commit)

    effects = Effects(
        uow_factory, accounts, invoicing, CsvCollectionsExport(settings.effective_export_dir)
    )
    effects_loop = EffectsLoop(effects, interval_seconds=settings.effects_interval_seconds)
    loop_holder.append(effects_loop)
    return DunningApp(
        settings=settings,
        clock=clock,
        engine=engine,
        uow_factory=uow_factory,
        redis=client,
        relay=relay,
        projection=projection_consumer(client, uow_factory, claim_idle_ms=settings.claim_idle_ms),
        workers=work_consumer(client, uow_factory, claim_idle_ms=settings.claim_idle_ms),
        scheduler=DailyScheduler(
            uow_factory,
            clock,
            run_hour=settings.run_hour,
            catch_up_days=settings.catch_up_days,
            interval_seconds=settings.scheduler_interval_seconds,
        ),
        effects=effects,
        effects_loop=effects_loop,
        servicer=DunningServicer(
            uow_factory, run_started=effects_loop.notify, run_hour=settings.run_hour
        ),
        owned_clients=owned,
        owns_clock=owns_clock,
    )


async def start(
    settings: DunningSettings,
    *,
    clock: Clock | None = None,
    accounts: AccountsPort | None = None,
    invoicing: InvoicingPort | None = None,
) -> RunningDunning:
    app = await build(settings, clock=clock, accounts=accounts, invoicing=invoicing)
    try:
        await app.projection.ensure_groups()
        await app.workers.ensure_groups()
        server = await create_server(
            service_name=settings.service_name,
            listen=settings.listen,
            service_token=settings.service_token.get_secret_value(),
            bindings=[
                ServiceBinding(
                    SERVICE_NAME,
                    dunning_pb2_grpc.add_DunningServiceServicer_to_server,
                    app.servicer,
                )
            ],
        )
    except BaseException:
        await app.redis.aclose()
        app.close_clients()
        app.engine.dispose()
        raise
    service = RunningDunning(app=app, server=server)
    stop = service._stop
    service._tasks = [
        asyncio.create_task(app.relay.run(stop), name="dunning-outbox-relay"),
        asyncio.create_task(app.projection.run(stop), name="dunning-projection"),
        asyncio.create_task(app.workers.run(stop), name="dunning-run-workers"),
        asyncio.create_task(app.scheduler.run(stop), name="dunning-daily-scheduler"),
        asyncio.create_task(app.effects_loop.run(stop), name="dunning-effects"),
    ]
    return service


@contextlib.asynccontextmanager
async def running_service(
    settings: DunningSettings,
    *,
    clock: Clock | None = None,
    accounts: AccountsPort | None = None,
    invoicing: InvoicingPort | None = None,
) -> AsyncIterator[RunningDunning]:
    service = await start(settings, clock=clock, accounts=accounts, invoicing=invoicing)
    try:
        yield service
    finally:
        await service.stop(grace=0)


async def run(settings: DunningSettings) -> None:
    service = await start(settings)
    # The kit's one heap policy (ADRs 0012, 0013): a work message allocates thousands of
    # short-lived rows and objects; the collector must not rescan the built heap for them.
    settle_heap()
    log.info("dunning serving on %s", service.address)
    await serve(
        service.server,
        grace=settings.shutdown_grace_seconds,
        on_stop=[service.stop_background],
    )
