"""A bill run into PostgreSQL: invoices generated and finalised per second, beside a COPY floor.

``python -m bench.invoicing [--accounts N] [--workers 1 2] [--records 20] [--json PATH]``

For each worker count it builds a fresh PostgreSQL schema with ``--accounts``
accounts (default 2,000; ``--accounts 100000`` for the full figure), each with a
subscription to a plan priced 29.95 in advance and ``--records`` rated usage
records (20) in the cycle that just ended, written in bulk the way invoicing's
consumers store them. Then:

* **bill run**: ``StartBillRun`` (auto-accept) writes the run, its work items and
  its work messages; ``--workers`` processes (each a bill-run worker as
  ``python -m services.invoicing worker`` runs it, with a fixed price list instead
  of rating) share the run through Redis Streams; the figure is accounts over the
  time from the start until the run is ACCEPTED (every invoice drafted, numbered,
  issued and announced through the outbox).
* **COPY floor** (same run): the invoice and invoice-line rows the run produced,
  read back and written with one bulk ``COPY`` each into empty copies of the
  tables: what storing those rows costs at least.

Peak memory: the largest resident set of a worker process. CPU per invoice (the
figure to compare on a shared machine, where wall-clock rates depend on the others'
load): the worker processes' user+system time, and the PostgreSQL backends serving
them (found by their ``application_name``), from the start of the run to ACCEPTED.
The PostgreSQL server is ``RECKON_TEST_POSTGRES_URL`` (default local, database ``test``);
Redis is a fresh embedded server. Schemas are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, insert, text

from services.common.clock import SystemClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.invoicing.adapters import orm
from services.invoicing.adapters.unit_of_work import SqlInvoicingUnitOfWork, session_factory
from services.invoicing.bootstrap import MIGRATIONS, start
from services.invoicing.config import InvoicingSettings
from services.invoicing.domain.builder import FeeQuote, FeeTiming, Pricing, TaxRate
from services.invoicing.domain.cycles import cycle_containing
from services.invoicing.domain.parties import AccountFacts, BillRunScope, BillRunState
from services.invoicing.service_layer import billruns
from suite.redis_server import EmbeddedRedis

POSTGRES = os.environ.get(
    "RECKON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TOKEN = "bench-token-0123456789"


class PriceList:
    """The pricing port answered from memory (rating's PricePlanFees is measured elsewhere)."""

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing:
        fee = FeeQuote(
            "monthly",
            "Monthly fee",
            "plan",
            Money.of("29.95", "EUR"),
            FeeTiming.IN_ADVANCE,
            "S",
            Decimal(21),
        )
        return Pricing({code: [fee] for code in plan_codes}, {}, TaxRate("S", Decimal(21)))


def _populate(engine: Any, accounts: int, records: int) -> None:
    now = datetime.now(UTC)
    ended = cycle_containing(now, 1, "UTC").previous()
    created = ended.start - timedelta(days=40)
    batch = 2000
    with engine.begin() as connection:
        for start_index in range(0, accounts, batch):
            ids = [
                f"acc_{index:026d}"
                for index in range(start_index, min(accounts, start_index + batch))
            ]
            connection.execute(
                insert(orm.customers),
                [
                    {
                        "customer_id": f"cus_{account_id[4:]}",
                        "display_name": "Bench",
                        "email": "bench@example.com",
                        "language_code": "en",
                        "reseller_id": "",
                        "group_id": "",
                    }
                    for account_id in ids
                ],
            )
            connection.execute(
                insert(orm.accounts),
                [
                    {
                        "account_id": account_id,
                        "customer_id": f"cus_{account_id[4:]}",
                        "currency_code": "EUR",
                        "time_zone": "UTC",
                        "bill_cycle_day": 1,
                        "tax_region": "NL",
                        "payment_terms_days": 14,
                        "payment_mode": "POSTPAID",
                        "parent_account_id": "",
                        "state": "ACTIVE",
                        "reseller_id": "",
                        "group_id": "",
                        "create_time": created,
                    }
                    for account_id in ids
                ],
            )
            connection.execute(
                insert(orm.segments),
                [
                    {
                        "subscription_id": f"sub_{account_id[4:]}",
                        "account_id": account_id,
                        "item_code": "basic",
                        "is_add_on": False,
                        "quantity": 1,
                        "start_time": created,
                        "end_time": None,
                    }
                    for account_id in ids
                ],
            )
            connection.execute(
                insert(orm.rated_usage),
                [
                    {
                        "record_id": f"{account_id}-{n}",
                        "account_id": account_id,
                        "service": "voice" if n % 4 else "sms",
                        "destination": "NL mobile" if n % 2 else "NL fixed",
                        "quantity": Decimal(60),
                        "unit": "second",
                        "net": Decimal("0.0123") * (n + 1),
                        "currency": "EUR",
                        "event_time": ended.start + timedelta(hours=n + 1),
                        "invoice_id": None,
                    }
                    for account_id in ids
                    for n in range(records)
                ],
            )


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pids: Collection[int]) -> float:
    """User + system CPU of these processes so far (Linux ``/proc``; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _backend_pids(application_name: str) -> list[int]:
    dsn = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def _worker(url: str, schema: str, redis_url: str, peak: Any) -> None:
    os.environ.update(
        {"RECKON_SERVICE_TOKEN": TOKEN, "REDIS_URL": redis_url, "OTEL_SDK_DISABLED": "true"}
    )
    settings = load_settings(
        InvoicingSettings,
        database_url=url,
        database_schema=schema,
        migrate_on_start=False,
        workers=1,
    )

    async def main() -> None:
        service = await start(settings, serve_api=False, pricer=PriceList())
        try:
            await service.wait()
        finally:
            await service.stop_background()

    import signal
    import threading

    def report_peak() -> None:
        while True:
            value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with peak.get_lock():
                peak.value = max(peak.value, value)
            time.sleep(0.5)

    threading.Thread(target=report_peak, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


def run_once(accounts: int, records: int, workers: int, redis_url: str) -> dict[str, Any]:
    schema = f"bench_inv_{os.getpid()}_{workers}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine = make_engine(POSTGRES, schema, instrument=False)
    try:
        upgrade_to_head(engine, MIGRATIONS)
        t0 = time.perf_counter()
        _populate(engine, accounts, records)
        # Statistics as a live database has them (its rows arrived over a cycle and
        # autovacuum analysed them); without them the planner guesses, e.g. scans all
        # accounts for every message. Not timed, like the load itself.
        with engine.begin() as connection:
            connection.execute(text("ANALYZE customers, accounts, segments, rated_usage"))
        populate_s = time.perf_counter() - t0
        sessions = session_factory(engine)
        clock = SystemClock()

        def uow_factory() -> SqlInvoicingUnitOfWork:
            return SqlInvoicingUnitOfWork(sessions, clock=clock)

        context = multiprocessing.get_context("spawn")
        peak = context.Value("l", 0)
        # Named connections, so the PostgreSQL backends serving the workers can be found.
        application = f"billrun-bench-{schema}"
        url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}application_name={application}"
        processes = [
            context.Process(target=_worker, args=(url, schema, redis_url, peak))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        time.sleep(3)  # workers import and connect before the clock starts
        worker_pids = [p.pid for p in processes if p.pid is not None]
        worker_cpu = _cpu_seconds(worker_pids)
        started = time.perf_counter()
        result = billruns.start_bill_run(
            uow_factory,
            PriceList(),
            BillRunScope(bill_cycle_day=1),
            None,
            dry_run=False,
            auto_accept=True,
        )
        run_id = result.run.bill_run_id

        async def relay_work() -> None:
            client = connect(redis_url)
            relay = OutboxRelay(engine, orm.kit.outbox, client, clock, batch_size=2000)
            while await relay.relay_once():
                pass
            await client.aclose()

        asyncio.run(relay_work())
        while True:
            with uow_factory() as uow:
                header = uow.runs.header(run_id)
            assert header is not None
            if header.state == BillRunState.ACCEPTED:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        worker_cpu = _cpu_seconds(worker_pids) - worker_cpu
        # Backends are pooled connections opened during the run: their whole CPU counts.
        backend_cpu = _cpu_seconds(_backend_pids(application))
        for process in processes:
            process.terminate()
            process.join(10)
        with uow_factory() as uow:
            run = uow.runs.get(run_id)
        assert run is not None
        floor = _copy_floor(schema)
        return {
            "accounts": accounts,
            "records_per_account": records,
            "workers": workers,
            "populate_s": round(populate_s, 1),
            "billrun_s": round(elapsed, 2),
            "invoices_per_s": round(accounts / elapsed, 1),
            "finalized": run.counts,
            "floor_rows": floor["rows"],
            "floor_s": round(floor["seconds"], 3),
            "floor_invoices_per_s": round(accounts / floor["seconds"], 1),
            "ratio_to_floor": round((accounts / elapsed) / (accounts / floor["seconds"]), 3),
            "peak_worker_rss_mb": round(peak.value / 1024, 1),
            "worker_cpu_ms_per_invoice": round(1000 * worker_cpu / accounts, 3),
            "postgres_cpu_ms_per_invoice": round(1000 * backend_cpu / accounts, 3),
        }
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _copy_floor(schema: str) -> dict[str, Any]:
    """COPY the run's invoice and line rows out; time one bulk COPY of each into empty copies."""
    dsn = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        buffers: dict[str, bytes] = {}
        rows = 0
        for table in ("invoices", "invoice_lines"):
            buffer = io.BytesIO()
            with cursor.copy(f"COPY {table} TO STDOUT") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            buffers[table] = buffer.getvalue()
            rows += buffers[table].count(b"\n")
            cursor.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        with connection.transaction():
            for table, data in buffers.items():
                with cursor.copy(f"COPY floor_{table} FROM STDIN") as copy:
                    copy.write(data)
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        redis = EmbeddedRedis(Path(folder) / "redis").start()
        try:
            results = []
            for workers in args.workers:
                outcome = run_once(args.accounts, args.records, workers, redis.url)
                results.append(outcome)
                print(json.dumps(outcome))
        finally:
            redis.stop()
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": results,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
