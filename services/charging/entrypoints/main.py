"""Running the charging service: ``python -m services.charging``.

Loads ``ChargingSettings`` (a bad or missing variable stops the process with a
message naming it), configures JSON logs and OpenTelemetry before any engine or
client exists, builds the app, serves gRPC until SIGINT/SIGTERM, then stops the
background tasks and closes Redis and SQL.

``CHARGING_WORKERS=N`` runs N server processes on the same port (``SO_REUSEPORT``:
the kernel spreads connections over them), because one Python process tops out
near a couple of thousand unary calls a second. The first process migrates the
database before the others start and is the only one running background work
(sweeper, relay, consumers); the others only serve. Each process has its own
group-commit ledger writer; Redis scripts keep them consistent.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from services.charging.bootstrap import MIGRATIONS, bootstrap
from services.charging.config import ChargingSettings
from services.charging.entrypoints.grpc_servicer import binding
from services.common.config import ConfigError, load_settings, parse_host_port
from services.common.db import make_engine
from services.common.grpc_server import RunningServer, create_server, serve
from services.common.heap import settle_heap
from services.common.logs import configure_logging
from services.common.migrations import upgrade_to_head
from services.common.telemetry import setup_telemetry

log = logging.getLogger(__name__)


async def run(
    settings: ChargingSettings,
    *,
    worker: int = 0,
    migrate: bool | None = None,
    grace: float = 5.0,
    on_ready: Callable[[RunningServer], Awaitable[None]] | None = None,
) -> None:
    """Serve one worker until SIGINT/SIGTERM; ``on_ready`` is awaited once it serves
    (the benchmark server announces itself with it)."""
    telemetry = setup_telemetry("charging")
    app = bootstrap(settings, migrate=migrate)
    await app.start()
    settle_heap()  # ADR 0012: what exists now lives for good
    options = [("grpc.so_reuseport", 1)] if settings.workers > 1 else []
    running = await create_server(
        service_name="charging",
        listen=settings.listen,
        service_token=settings.service_token.get_secret_value(),
        bindings=[binding(app.handlers)],
        options=options,
    )
    stop = asyncio.Event()
    if worker == 0:
        app.start_background(stop)
    log.info("charging worker %d serving on port %d", worker, running.port)
    if on_ready is not None:
        await on_ready(running)

    async def shutdown() -> None:
        stop.set()
        await app.close()
        telemetry.shutdown()

    await serve(running, grace=grace, on_stop=[shutdown])


def _worker(index: int) -> None:
    """Entry of a spawned worker process: it reads the same environment."""
    settings = load_settings(ChargingSettings)
    configure_logging("charging", settings.log_level)
    asyncio.run(run(settings, worker=index, migrate=False))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(ChargingSettings)
        if settings.workers > 1 and parse_host_port(settings.listen)[1] == 0:
            raise ConfigError(
                "charging cannot start: CHARGING_WORKERS > 1 needs a fixed port in CHARGING_LISTEN"
            )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("charging", settings.log_level)
    children: list[multiprocessing.process.BaseProcess] = []
    if settings.workers > 1:
        if settings.migrate_on_start:
            engine = make_engine(
                settings.effective_database_url,
                settings.effective_database_schema,
                instrument=False,
            )
            upgrade_to_head(engine, MIGRATIONS)
            engine.dispose()
        context = multiprocessing.get_context("spawn")
        for index in range(1, settings.workers):
            child = context.Process(target=_worker, args=(index,), name=f"charging-worker-{index}")
            child.start()
            children.append(child)
    try:
        asyncio.run(run(settings, worker=0, migrate=False if children else None))
    except (RedisError, SQLAlchemyError, OSError) as exc:
        # A dependency that is not there at start: say which, without a traceback.
        print(f"charging cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for process in children:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker drains like the first one
        for process in children:
            process.join(timeout=15)
    return 0
