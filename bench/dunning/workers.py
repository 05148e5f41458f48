"""The worker processes of ``bench.dunning`` (a module of their own, so that spawned
processes find them): each opens its own engine, as the stream workers do, judges the
work messages it is given and reports its PostgreSQL backends' CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.heap import settle_heap
from services.dunning.adapters.unit_of_work import SqlDunningUnitOfWork, session_factory
from services.dunning.service_layer import runs

RUN_DATE = date(2027, 3, 15)

_TICK = os.sysconf("SC_CLK_TCK")


def watch_backends(engine: object, pids: set[int]) -> None:
    """Remember the PostgreSQL backend process of every connection ``engine`` opens."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")  # type: ignore[misc]
    def _pid(dbapi_connection: object, _: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("SELECT pg_backend_pid()")
        pids.add(int(cursor.fetchone()[0]))
        cursor.close()


def backend_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) each of these PostgreSQL backends has used so far (the
    server runs on this machine; /proc tells)."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return used


_worker: dict[str, object] = {}
_worker_pids: set[int] = set()


def worker_start(url: str, schema: str) -> None:
    """Each worker process: its own engine and sessions, like a stream worker."""
    engine = make_engine(url, schema, pool_size=2, instrument=False)
    _worker_pids.clear()
    watch_backends(engine, _worker_pids)
    sessions = session_factory(engine)
    clock = ManualClock(datetime.combine(RUN_DATE, datetime.min.time(), UTC) + timedelta(hours=2))
    _worker["uow"] = lambda: SqlDunningUnitOfWork(sessions, clock=clock)
    settle_heap()  # as the service does once built (bootstrap.run)
    _worker["ready_cpu"] = time.process_time()  # what starting the process cost is not counted


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started its program (``VmHWM``:
    unlike ``ru_maxrss`` it does not count the parent's pages from before ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_process(
    run_id: str, account_ids: Sequence[str]
) -> tuple[int, float, dict[int, float], float]:
    """Judge one message. Returns this worker's pid, the CPU it has used since it was
    ready, the CPU its PostgreSQL backends have used so far (all cumulative) and its
    peak RSS."""
    runs.process(_worker["uow"], run_id, account_ids)  # type: ignore[arg-type]
    used = time.process_time() - float(_worker["ready_cpu"])  # type: ignore[arg-type]
    return os.getpid(), used, backend_cpu(_worker_pids), peak_rss_mib()
