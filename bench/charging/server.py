"""The charging server for benchmarks, in a process of its own.

The same composition as ``python -m services.charging`` (``bootstrap`` + the kit's
``create_server``, background tasks included, the same garbage-collector tuning),
configured by the environment the benchmark passes, announcing
``{"port": N, "pid": P}`` on stdout when ready (see ``bench.common.processes``).
Telemetry follows ``OTEL_*`` like the service's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from bench.common.processes import announce
from services.charging.bootstrap import bootstrap
from services.charging.config import ChargingSettings
from services.charging.entrypoints.grpc_servicer import binding
from services.common.config import load_settings
from services.common.grpc_server import create_server, serve
from services.common.heap import settle_heap
from services.common.telemetry import setup_telemetry


async def _serve() -> None:
    telemetry = setup_telemetry("charging")
    settings = load_settings(ChargingSettings)
    app = bootstrap(settings)
    await app.start()
    settle_heap()
    running = await create_server(
        service_name="charging",
        listen=settings.listen,
        service_token=settings.service_token.get_secret_value(),
        bindings=[binding(app.handlers)],
    )
    stop = asyncio.Event()
    app.start_background(stop)
    announce(port=running.port, pid=os.getpid())

    async def shutdown() -> None:
        stop.set()
        await app.close()
        telemetry.shutdown()

    await serve(running, grace=1.0, on_stop=[shutdown])
    announce(stopped=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        asyncio.run(_serve())
        return
    # BENCH_PROFILE=<file>: profile the event loop's thread and dump the stats on exit.
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU of the event loop thread
    profiler.enable()
    try:
        asyncio.run(_serve())
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
