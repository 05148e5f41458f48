"""The composition root of the payments service: the one place real adapters are wired.

``start`` builds from settings: the SQL engine (migrated when configured), the
provider (the embedded sandbox, or Stripe), invoicing and charging clients
(``INVOICING_ADDR``, ``CHARGING_ADDR``; without them what needs them waits in
``effects_pending`` and a warning says so), the use cases, the outbox relay, the
``InvoiceIssued`` consumer, the background workers (janitor, retries, effects,
sandbox settlement with signed callbacks) and the gRPC server. Tests start it
in-process with ``running_service`` and may pass their own clock, provider and ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy import Engine

from reckon.payments.v1 import payments_pb2_grpc
from services.common.clock import Clock, clock_from_config, close_clock
from services.common.db import make_engine
from services.common.grpc_server import RunningServer, ServiceBinding, create_server, serve
from services.common.migrations import upgrade_to_head
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.common.streams import StreamConsumer
from services.payments.adapters.charging_client import GrpcCharging, NoCharging
from services.payments.adapters.invoicing_client import GrpcInvoicing, NoInvoicing
from services.payments.adapters.orm import kit
from services.payments.adapters.sandbox import SandboxProvider, new_webhook_secret
from services.payments.adapters.stripe_provider import StripeProvider
from services.payments.adapters.unit_of_work import SqlPaymentsUnitOfWork, session_factory
from services.payments.config import PaymentsSettings
from services.payments.domain.provider import PaymentProvider
from services.payments.entrypoints.callbacks import ProviderCallbacks
from services.payments.entrypoints.event_consumers import invoice_issued_consumer
from services.payments.entrypoints.grpc_servicer import SERVICE_NAME, PaymentsServicer
from services.payments.entrypoints.workers import PaymentWorkers
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.methods import MethodsService
from services.payments.service_layer.ports import ChargingPort, InvoicingPort, PaymentsUnitOfWork
from services.payments.service_layer.statements import Statements

log = logging.getLogger(__name__)

MIGRATIONS = "services.payments.adapters.migrations"
_BACKGROUND_STOP_SECONDS = 0.5


@dataclass
class PaymentsApp:
    settings: PaymentsSettings
    clock: Clock
    engine: Engine
    uow_factory: Callable[[], PaymentsUnitOfWork]
    redis: aioredis.Redis
    relay: OutboxRelay
    provider: PaymentProvider
    collector: Collector
    methods: MethodsService
    statements: Statements
    callbacks: ProviderCallbacks
    workers: PaymentWorkers
    invoice_events: StreamConsumer
    servicer: PaymentsServicer
    closers: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class RunningPayments:
    app: PaymentsApp
    server: RunningServer
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closed: bool = False

    @property
    def port(self) -> int:
        return self.server.port

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
        for close in self.app.closers:
            close()
        await asyncio.to_thread(self.app.engine.dispose)


def make_provider(settings: PaymentsSettings, clock: Clock, secret: str) -> PaymentProvider:
    if settings.provider == "stripe":
        key = settings.stripe_api_key.get_secret_value()
        if not key:
            raise ValueError("PAYMENTS_STRIPE_API_KEY is required with PAYMENTS_PROVIDER=stripe")
        return StripeProvider(key, api_base=settings.stripe_api_base)
    return SandboxProvider(
        clock,
        webhook_secret=secret,
        settle_after=timedelta(days=settings.sandbox_settle_days),
        journal=settings.data_dir / "payments-sandbox.jsonl",
    )


async def build(
    settings: PaymentsSettings,
    *,
    clock: Clock | None = None,
    provider: PaymentProvider | None = None,
    invoicing: InvoicingPort | None = None,
    charging: ChargingPort | None = None,
) -> PaymentsApp:
    if clock is None:
        # The suite's shared test clock under `reckon up --test-clock` (retries and
        # due dates then follow `reckon clock advance`), else the machine's.
        clock = clock_from_config(settings)
        closers_first: list[Callable[[], None]] = [lambda: close_clock(clock)]
    else:
        closers_first = []
    engine = make_engine(settings.effective_database_url, settings.effective_database_schema)
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_to_head, engine, MIGRATIONS)
    sessions = session_factory(engine)
    client = connect(settings.redis_url)
    relay = OutboxRelay(engine, kit.outbox, client, clock, retention=settings.outbox_retention)
    secret = settings.webhook_secret.get_secret_value() or new_webhook_secret()
    provider = provider or make_provider(settings, clock, secret)
    closers: list[Callable[[], None]] = closers_first
    token = settings.service_token.get_secret_value()
    if invoicing is None:
        if settings.invoicing_addr:
            grpc_invoicing = GrpcInvoicing(
                settings.invoicing_addr, token, timeout_seconds=settings.peer_timeout_seconds
            )
            closers.append(grpc_invoicing.close)
            invoicing = grpc_invoicing
        else:
            log.warning("INVOICING_ADDR is not set: payments cannot be allocated to invoices")
            invoicing = NoInvoicing()
    if charging is None:
        if settings.charging_addr:
            grpc_charging = GrpcCharging(
                settings.charging_addr, token, timeout_seconds=settings.peer_timeout_seconds
            )
            closers.append(grpc_charging.close)
            charging = grpc_charging
        else:
            log.warning("CHARGING_ADDR is not set: prepaid top-ups wait until it is")
            charging = NoCharging()

    def uow_factory() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock, after_commit=relay.notify)

    collector = Collector(
        uow_factory,
        provider,
        invoicing,
        charging,
        clock,
        default_retry_days=settings.retry_schedule,
    )
    # The service token keys the digests of AddPaymentMethod requests (never stored).
    methods = MethodsService(
        uow_factory, provider, invoicing, clock, fingerprint_key=token.encode()
    )
    statements = Statements(uow_factory, collector, invoicing, clock, provider)
    callbacks = ProviderCallbacks(collector, secret)
    settle = None
    if isinstance(provider, SandboxProvider):
        provider.on_callback(callbacks.receive)
        settle = provider.settle_due
    return PaymentsApp(
        settings=settings,
        clock=clock,
        engine=engine,
        uow_factory=uow_factory,
        redis=client,
        relay=relay,
        provider=provider,
        collector=collector,
        methods=methods,
        statements=statements,
        callbacks=callbacks,
        workers=PaymentWorkers(
            collector,
            settings.worker_interval_seconds,
            settings.worker_batch_size,
            settle,
            clock=clock,
        ),
        invoice_events=invoice_issued_consumer(
            client, collector, claim_idle_ms=settings.invoice_events_claim_idle_ms
        ),
        servicer=PaymentsServicer(methods, collector, statements, callbacks),
        closers=closers,
    )


async def start(settings: PaymentsSettings, **overrides: object) -> RunningPayments:
    app = await build(settings, **overrides)  # type: ignore[arg-type]
    try:
        await app.invoice_events.ensure_groups()
        server = await create_server(
            service_name=settings.service_name,
            listen=settings.listen,
            service_token=settings.service_token.get_secret_value(),
            bindings=[
                ServiceBinding(
                    SERVICE_NAME,
                    payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
                    app.servicer,
                )
            ],
        )
    except BaseException:
        await app.redis.aclose()
        for close in app.closers:
            close()
        app.engine.dispose()
        raise
    service = RunningPayments(app=app, server=server)
    service._tasks = [
        asyncio.create_task(app.relay.run(service._stop), name="payments-outbox-relay"),
        asyncio.create_task(app.invoice_events.run(service._stop), name="payments-invoice-events"),
        asyncio.create_task(app.workers.run(service._stop), name="payments-workers"),
    ]
    return service


@contextlib.asynccontextmanager
async def running_service(
    settings: PaymentsSettings, **overrides: object
) -> AsyncIterator[RunningPayments]:
    service = await start(settings, **overrides)
    try:
        yield service
    finally:
        await service.stop(grace=0)


async def run(settings: PaymentsSettings) -> None:
    service = await start(settings)
    log.info("payments serving on port %d (provider %s)", service.port, settings.provider)
    await serve(
        service.server,
        grace=settings.shutdown_grace_seconds,
        on_stop=[service.stop_background],
    )
