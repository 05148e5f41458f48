"""The composition root of invoicing: the one place real adapters are wired.

``start`` builds everything from settings: the SQL engine (migrated when
``migrate_on_start``), the unit-of-work factory (commits wake the outbox relay),
Redis, the outbox relay, the consumer of accounts' and rating's facts, the
bill-run workers, the scheduler, the fee pricer (rating's, when ``RATING_ADDR``
is set) and the gRPC server. ``start_worker`` builds only what a bill-run
worker process needs (``python -m services.invoicing worker``). Tests start the
service in-process with ``running_service`` and their own clock or pricer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy import Engine

from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common import clock as kit_clock
from services.common.clock import Clock, SystemClock
from services.common.db import make_engine
from services.common.grpc_server import RunningServer, ServiceBinding, create_server, serve
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.common.streams import StreamConsumer
from services.invoicing.adapters.orm import kit
from services.invoicing.adapters.rating_pricer import NoFeesPricer, RatingFeePricer
from services.invoicing.adapters.unit_of_work import SqlInvoicingUnitOfWork, session_factory
from services.invoicing.config import InvoicingSettings
from services.invoicing.entrypoints.event_consumers import facts_consumer, work_consumer
from services.invoicing.entrypoints.grpc_servicer import (
    SERVICE_NAME,
    DocumentRenderer,
    InvoicingServicer,
)
from services.invoicing.entrypoints.scheduler import BillRunScheduler
from services.invoicing.service_layer.drafting import FeePricer
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

log = logging.getLogger(__name__)

MIGRATIONS = "services.invoicing.adapters.migrations"
_BACKGROUND_STOP_SECONDS = 0.5


@dataclass
class InvoicingApp:
    settings: InvoicingSettings
    clock: Clock
    engine: Engine
    uow_factory: Callable[[], InvoicingUnitOfWork]
    redis: aioredis.Redis
    relay: OutboxRelay
    pricer: FeePricer
    facts: StreamConsumer | None
    workers: list[StreamConsumer]
    scheduler: BillRunScheduler | None
    servicer: InvoicingServicer | None
    owned_pricer: RatingFeePricer | None = None


@dataclass
class RunningInvoicing:
    app: InvoicingApp
    server: RunningServer | None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closed: bool = False

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def address(self) -> str:
        host = self.app.settings.listen.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
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
        release_clock(self.app.clock)
        if self.app.owned_pricer is not None:
            self.app.owned_pricer.close()
        await asyncio.to_thread(self.app.engine.dispose)

    async def wait(self) -> None:
        await self._stop.wait()


def service_clock(settings: InvoicingSettings) -> Clock:
    """The suite's clock: the kit's ``clock_from_config`` where it exists (the shared
    test clock under ``reckon up --test-clock``), else the machine's."""
    factory = getattr(kit_clock, "clock_from_config", None)
    if factory is None:
        return SystemClock()
    chosen: Clock = factory(settings)
    return chosen


def release_clock(clock: Clock) -> None:
    closer = getattr(kit_clock, "close_clock", None)
    if closer is not None:
        closer(clock)


def fee_pricer(settings: InvoicingSettings) -> tuple[FeePricer, RatingFeePricer | None]:
    if settings.rating_addr is None:
        log.warning("RATING_ADDR is not set: plan fees are not invoiced (usage and items are)")
        return NoFeesPricer(), None
    pricer = RatingFeePricer.connect(
        settings.rating_addr,
        settings.service_token.get_secret_value(),
        timeout_seconds=settings.pricing_timeout_seconds,
    )
    return pricer, pricer


async def build(
    settings: InvoicingSettings,
    *,
    clock: Clock | None = None,
    pricer: FeePricer | None = None,
    renderer: DocumentRenderer | None = None,
    serve_api: bool = True,
) -> InvoicingApp:
    clock = clock or service_clock(settings)
    engine = make_engine(settings.effective_database_url, settings.effective_database_schema)
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_to_head, engine, MIGRATIONS)
    sessions = session_factory(engine)
    client = connect(settings.redis_url)
    relay = OutboxRelay(engine, kit.outbox, client, clock, retention=settings.outbox_retention)
    owned = None
    if pricer is None:
        pricer, owned = fee_pricer(settings)

    def uow_factory() -> InvoicingUnitOfWork:
        return SqlInvoicingUnitOfWork(sessions, clock=clock, after_commit=relay.notify)

    workers = [
        work_consumer(
            client,
            uow_factory,
            pricer,
            claim_idle_ms=settings.work_claim_idle_ms,
            consumer_name=None
            if settings.workers == 1
            else f"invoicing-billrun-{index}-{id(client)}",
        )
        for index in range(settings.workers)
    ]
    return InvoicingApp(
        settings=settings,
        clock=clock,
        engine=engine,
        uow_factory=uow_factory,
        redis=client,
        relay=relay,
        pricer=pricer,
        facts=facts_consumer(client, uow_factory, claim_idle_ms=settings.events_claim_idle_ms)
        if serve_api
        else None,
        workers=workers,
        scheduler=BillRunScheduler(
            uow_factory,
            pricer,
            clock,
            interval_seconds=settings.scheduler_interval_seconds,
            daily_runs=settings.daily_bill_runs,
            stalled_after=timedelta(seconds=settings.stalled_after_seconds),
        )
        if serve_api
        else None,
        servicer=InvoicingServicer(uow_factory, pricer, renderer) if serve_api else None,
        owned_pricer=owned,
    )


async def start(
    settings: InvoicingSettings,
    *,
    clock: Clock | None = None,
    pricer: FeePricer | None = None,
    renderer: DocumentRenderer | None = None,
    serve_api: bool = True,
) -> RunningInvoicing:
    app = await build(settings, clock=clock, pricer=pricer, renderer=renderer, serve_api=serve_api)
    server = None
    try:
        for consumer in [*app.workers, *([app.facts] if app.facts else [])]:
            await consumer.ensure_groups()
        if app.servicer is not None:
            server = await create_server(
                service_name=settings.service_name,
                listen=settings.listen,
                service_token=settings.service_token.get_secret_value(),
                bindings=[
                    ServiceBinding(
                        SERVICE_NAME,
                        invoicing_pb2_grpc.add_InvoicingServiceServicer_to_server,
                        app.servicer,
                    )
                ],
            )
    except BaseException:
        await app.redis.aclose()
        app.engine.dispose()
        raise
    service = RunningInvoicing(app=app, server=server)
    tasks = [asyncio.create_task(app.relay.run(service._stop), name="invoicing-outbox-relay")]
    if app.facts is not None:
        tasks.append(asyncio.create_task(app.facts.run(service._stop), name="invoicing-facts"))
    if app.scheduler is not None:
        tasks.append(
            asyncio.create_task(app.scheduler.run(service._stop), name="invoicing-scheduler")
        )
    for index, worker in enumerate(app.workers):
        tasks.append(
            asyncio.create_task(worker.run(service._stop), name=f"invoicing-worker-{index}")
        )
    service._tasks = tasks
    return service


@contextlib.asynccontextmanager
async def running_service(
    settings: InvoicingSettings,
    *,
    clock: Clock | None = None,
    pricer: FeePricer | None = None,
    renderer: DocumentRenderer | None = None,
) -> AsyncIterator[RunningInvoicing]:
    service = await start(settings, clock=clock, pricer=pricer, renderer=renderer)
    try:
        yield service
    finally:
        await service.stop(grace=0)


async def run(settings: InvoicingSettings) -> None:
    service = await start(settings, renderer=default_renderer())
    log.info("invoicing serving on %s", service.address)
    assert service.server is not None
    await serve(
        service.server, grace=settings.shutdown_grace_seconds, on_stop=[service.stop_background]
    )


async def run_worker(settings: InvoicingSettings) -> None:
    """Bill-run workers only, until SIGINT/SIGTERM (SIGKILL loses nothing: ADR 0022)."""
    import signal

    service = await start(settings, serve_api=False)
    log.info("invoicing bill-run worker started (%d consumers)", len(service.app.workers))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service._stop.set)
    await service.wait()
    await service.stop_background()


def default_renderer() -> DocumentRenderer | None:
    """The documents renderer when ``services/invoicing/documents`` is present."""
    try:
        module = importlib.import_module("services.invoicing.adapters.documents")
    except ImportError:
        return None
    renderer: DocumentRenderer = module.ModelRenderer()
    return renderer
