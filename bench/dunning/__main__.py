"""``python -m bench.dunning``: the daily dunning run over N accounts on PostgreSQL.

Seeds a fresh schema with N accounts, each with one invoice; ``--overdue`` of them
(default 10%) are open and past due (12 days: the default policy's level 2, an SMS
and a late fee each), the rest paid. Then, in the same process and schema:

1. **floor**: one ``SELECT`` of the rows the run reads (the candidate accounts, their
   projection rows and their invoices): how fast PostgreSQL hands them over at all;
2. **run**: ``start_run`` (the run and one work item per candidate by one
   ``INSERT ... SELECT``, the work messages in the outbox) then the work messages done
   by ``--workers`` worker processes (spawned, each with its own engine, as the stream
   workers are separate processes), each message of 1,000 accounts judged in one
   transaction (ADR 0050, 0070): read the pending accounts and their invoices, judge,
   store the reactions under their keys and the events in the outbox (``COPY``), write
   the cases and mark the items DONE; exactly as the stream workers do, minus the
   Redis hop.

Prints accounts evaluated per second beside the floor, the run's wall time, the CPU
time of this process and its workers per account next to the wall time per account
(the machine is shared: CPU per account is the figure to compare), the reactions and
events written, the load average, and the peak RSS of this process and of the largest
worker (memory must stay flat: a worker holds one message at a time). Default N is
small (10,000); ``--accounts 1000000`` gives the issue's figure. PostgreSQL from
``--database-url`` (default: the test server) in a schema dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.heap import settle_heap
from services.common.migrations import upgrade_to_head
from services.dunning.adapters.orm import dunning_reactions, kit
from services.dunning.adapters.unit_of_work import SqlDunningUnitOfWork, session_factory
from services.dunning.bootstrap import MIGRATIONS
from services.dunning.service_layer import handlers, runs

from .workers import RUN_DATE, backend_cpu, watch_backends, worker_process, worker_start

DEFAULT_URL = os.environ.get(
    "RECKON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dunning-policy.yaml"


def _rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def seed(engine: object, accounts: int, overdue_every: int) -> None:
    """N accounts and N invoices with generate_series: seconds, not minutes, for 10^6."""
    due_overdue = RUN_DATE - timedelta(days=12)
    with engine.begin() as connection:  # type: ignore[attr-defined]
        connection.execute(
            text(
                "INSERT INTO dunned_accounts (account_id, customer_id, group_id, reseller_id,"
                " currency, closed, last_failure_reason, exempt_reason, episode_id, state,"
                " level, end_reason, policy_code, policy_version, service_action, version)"
                " SELECT 'acc_' || lpad(n::text, 9, '0'), 'cus_' || lpad(n::text, 9, '0'),"
                " '', '', 'EUR', false, '', '', '', 'ENDED', 0, '', '', 0, '', 1"
                " FROM generate_series(1, :n) AS n"
            ),
            {"n": accounts},
        )
        connection.execute(
            text(
                "INSERT INTO dunned_invoices (invoice_id, account_id, customer_id, currency,"
                " status, total, amount_due, disputed_amount, due_date, failed_attempts,"
                " highest_level, fees_charged)"
                " SELECT 'inv_' || lpad(n::text, 9, '0'), 'acc_' || lpad(n::text, 9, '0'),"
                " 'cus_' || lpad(n::text, 9, '0'), 'EUR',"
                " CASE WHEN n % :every = 0 THEN 'OPEN' ELSE 'PAID' END, 80, "
                " CASE WHEN n % :every = 0 THEN 80 ELSE 0 END, 0,"
                " CASE WHEN n % :every = 0 THEN CAST(:overdue AS date)"
                "      ELSE CAST(:overdue AS date) + 20 END, 0, 0, 0"
                " FROM generate_series(1, :n) AS n"
            ),
            {"n": accounts, "every": overdue_every, "overdue": due_overdue},
        )
        connection.execute(text("ANALYZE dunned_accounts"))
        connection.execute(text("ANALYZE dunned_invoices"))


def floor(engine: object) -> tuple[int, float]:
    """Seconds to read the candidates' account and invoice rows in one SELECT."""
    started = time.perf_counter()
    with engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(
            text(
                "SELECT a.*, i.* FROM dunned_invoices i"
                " JOIN dunned_accounts a ON a.account_id = i.account_id"
                " WHERE i.status IN ('OPEN', 'PARTIALLY_PAID') AND i.due_date < :day"
            ),
            {"day": RUN_DATE},
        ).all()
    return len(rows), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--overdue", type=float, default=0.10, help="share overdue (0..1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    every = max(1, round(1 / args.overdue))
    schema = f"bench_dunning_{os.getpid()}"
    engine = make_engine(args.database_url, schema, pool_size=args.workers + 2, instrument=False)
    try:
        upgrade_to_head(engine, MIGRATIONS)
        clock = ManualClock(
            datetime.combine(RUN_DATE, datetime.min.time(), UTC) + timedelta(hours=2)
        )
        sessions = session_factory(engine)

        def uow() -> SqlDunningUnitOfWork:
            return SqlDunningUnitOfWork(sessions, clock=clock)

        handlers.apply_policy(uow(), SAMPLE.read_text())
        started = time.perf_counter()
        seed(engine, args.accounts, every)
        print(
            f"seeded {args.accounts:,} accounts, 1 in {every} overdue, "
            f"in {time.perf_counter() - started:.1f} s"
        )
        rows, floor_s = floor(engine)
        rss_before = _rss_mib()

        settle_heap()  # as the service does once built (bootstrap.run)
        backends: set[int] = set()
        watch_backends(engine, backends)
        engine.dispose()  # connections from here on are watched
        load_before = os.getloadavg()
        cpu_before = time.process_time()
        started = time.perf_counter()
        run = runs.start_run(uow, RUN_DATE)
        queued_s = time.perf_counter() - started
        with uow() as unit:
            pending = list(unit.runs.pending(run.run_id))
        batches = [
            pending[i : i + runs.ACCOUNTS_PER_MESSAGE]
            for i in range(0, len(pending), runs.ACCOUNTS_PER_MESSAGE)
        ]
        worker_backends: dict[int, float] = {}
        worker_cpu: dict[int, float] = {}
        worker_rss = 0.0
        if args.workers <= 1:
            for batch in batches:  # in this process (profilers see it)
                runs.process(uow, run.run_id, batch)
        else:
            with ProcessPoolExecutor(
                args.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_start,
                initargs=(args.database_url, schema),
            ) as pool:
                for pid, cpu, used, rss in pool.map(
                    worker_process, [run.run_id] * len(batches), batches
                ):
                    worker_cpu[pid] = cpu  # cumulative per worker: the last is all
                    worker_backends.update(used)  # the same per backend
                    worker_rss = max(worker_rss, rss)
        run_s = time.perf_counter() - started
        server_cpu_s = sum(backend_cpu(backends).values()) + sum(worker_backends.values())
        cpu_s = time.process_time() - cpu_before + sum(worker_cpu.values())
        load_after = os.getloadavg()
        with uow() as unit:
            done = unit.runs.get(run.run_id)
        assert done is not None
        with engine.connect() as connection:
            reactions = connection.execute(
                select(func.count()).select_from(dunning_reactions)
            ).scalar_one()
            events = connection.execute(select(func.count()).select_from(kit.outbox)).scalar_one()
        rss_after = _rss_mib()
        judged = done.accounts_done
        print(
            f"run {done.state}: {judged:,} of {done.accounts_total:,} accounts judged, "
            f"{done.accounts_escalated:,} escalated"
        )
        print(f"  reactions stored {reactions:,}, outbox rows {events:,}")
        print(f"  start (items + work messages): {queued_s:.2f} s; whole run: {run_s:.2f} s")
        print(f"  accounts evaluated/s: {judged / run_s:,.0f}  ({args.workers} worker processes)")
        print(
            f"  per account: wall {run_s / judged * 1e3:.3f} ms, client CPU "
            f"{cpu_s / judged * 1e3:.3f} ms ({cpu_s:.1f} s CPU in this process and its "
            f"workers once started), PostgreSQL CPU {server_cpu_s / judged * 1e3:.3f} ms "
            f"({server_cpu_s:.1f} s in the run's backends)"
        )
        print(
            "  load average (1/5/15 min): before "
            + "/".join(f"{x:.1f}" for x in load_before)
            + ", after "
            + "/".join(f"{x:.1f}" for x in load_after)
        )
        print(
            f"  floor: SELECT of the same {rows:,} rows in {floor_s:.3f} s "
            f"= {rows / floor_s:,.0f} rows/s"
        )
        print(f"  run / floor: {run_s / floor_s:,.0f}x the floor's time")
        print(
            f"  peak RSS: {rss_before:.0f} MiB before the run, {rss_after:.0f} MiB after; "
            f"largest worker {worker_rss:.0f} MiB"
        )
    finally:
        engine.dispose()
        plain = create_engine(
            args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        with plain.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        plain.dispose()


if __name__ == "__main__":
    main()
