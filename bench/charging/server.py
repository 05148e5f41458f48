"""The charging server for benchmarks, in a process of its own.

It is ``services.charging.entrypoints.main.run``, the composition of
``python -m services.charging`` (``bootstrap`` + the kit's ``create_server``,
background tasks, the same garbage-collector tuning), configured by the
environment the benchmark passes, announcing ``{"port": N, "pid": P}`` on stdout
when ready (see ``bench.common.processes``). Telemetry follows ``OTEL_*`` like the
service's.

With ``CHARGING_WORKERS=N`` the benchmark starts N of these: the first on a free
port (it migrates the database and runs the background work), then workers
``BENCH_WORKER=1..N-1`` on that port, all with ``SO_REUSEPORT``, as the service's
own worker processes share one (``main.py``). Each reports its index as the
health service ``bench.worker.<index>`` (SERVING), so the benchmark can tell
which worker a connection reached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from grpc_health.v1 import health_pb2

from bench.common.processes import announce
from services.charging.config import ChargingSettings
from services.charging.entrypoints.main import run
from services.common.config import load_settings
from services.common.grpc_server import RunningServer

WORKER_HEALTH_SERVICE = "bench.worker.{}"


async def _serve(worker: int) -> None:
    async def ready(running: RunningServer) -> None:
        await running.health.set(
            WORKER_HEALTH_SERVICE.format(worker), health_pb2.HealthCheckResponse.SERVING
        )
        announce(port=running.port, pid=os.getpid())

    await run(
        load_settings(ChargingSettings),
        worker=worker,
        migrate=False if worker else None,  # the first worker migrated before the others start
        grace=1.0,
        on_ready=ready,
    )
    announce(stopped=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    worker = int(os.environ.get("BENCH_WORKER", "0"))
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        asyncio.run(_serve(worker))
        return
    # BENCH_PROFILE=<file>: profile the event loop's thread and dump the stats on exit
    # (workers after the first to <file>.<worker>).
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU of the event loop thread
    profiler.enable()
    try:
        asyncio.run(_serve(worker))
    finally:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{worker}" if worker else profile_to)


if __name__ == "__main__":
    main()
