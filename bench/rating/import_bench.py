"""End-to-end usage import into PostgreSQL, in CDRs per second, against floors of the same run.

``python -m bench.rating.import_bench [--records N] [--small N] [--prefixes N] [--json PATH]``

Builds a realistic catalog (default 60,000 destination prefixes, three time bands,
60/60, 30/6 and 1/1 increments, connection fees, minimum costs, two taxes) in a
fresh PostgreSQL schema, 1,000 accounts in five time zones, and writes a CDR file
of ``--records`` lines (default 1,000,000) to a temporary folder. Then it measures:

* **parse floor**: reading the file with the service's own reader (decode, split,
  typed fields), nothing else;
* **COPY floor**: parsing plus a bulk ``COPY`` of rows of the stored shape (same
  columns, indexes and breakdown size) into a copy of the ``rated_usage`` table,
  without rating: what persisting the file costs at least;
* **end to end**: ``UsageImporter.import_path``, exactly what ``ImportUsage`` and the
  drop folder run: parse, validate, de-duplicate, rate, persist (COPY), write the
  ``UsageRated`` events to the outbox, with the outbox relay moving them to a real
  Redis at the same time; the figure is taken when the last event reached Redis.

Peak memory: the maximum resident set size after an end-to-end import of
``--small`` records (default 250,000) and after the full file; the import streams,
so the second must not be meaningfully higher.

The PostgreSQL server is ``RECKON_TEST_POSTGRES_URL`` (default: local, database
``test``). The schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import create_engine, text

from bench.rating.data import ZONES, account_ids, write_catalog, write_cdrs
from services.common.clock import ManualClock
from services.common.events import EventEnvelope
from services.common.outbox import OutboxRelay
from services.common.redis_kit import connect
from services.rating.adapters import orm
from services.rating.bootstrap import RELAY_BATCH, RatingApp, bootstrap
from services.rating.config import RatingSettings
from services.rating.service_layer.accounts_view import apply_account_event
from services.rating.service_layer.catalog import apply_catalog, import_destinations
from services.rating.service_layer.unit_of_work import RATED_COLUMNS
from services.rating.service_layer.usage_formats import ImportOptions, UsageFileReader, UsageRecord
from suite.redis_server import EmbeddedRedis

GOAL = 20_000
POSTGRES_URL = os.environ.get(
    "RECKON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _event(event_type: str, payload: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        f"evt-{event_type}-{payload['account_id']}",
        event_type,
        "accounts",
        payload["account_id"],
        datetime(2026, 1, 1, tzinfo=UTC),
        payload,
    )


class _GcTimer:
    """A ``gc.callbacks`` hook adding up the time spent in collections, per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.by_generation = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            self.seconds += took
            self.collections[info["generation"]] += 1
            self.by_generation[info["generation"]] += took


def prepare(app: RatingApp, folder: Path, prefixes: int, accounts: int) -> list[str]:
    prefix_file, document = write_catalog(folder, prefixes, seed=7)
    import_destinations(
        app.uow_factory,
        app.tariffs,
        app.clock,
        path=prefix_file,
        file_name="prefixes.csv",
        has_header=True,
    )
    apply_catalog(
        app.uow_factory,
        app.tariffs,
        app.clock,
        document=document.read_text(encoding="utf-8"),
        document_format="json",
        source_name="catalog.json",
    )
    ids = account_ids(accounts)
    for index, account_id in enumerate(ids):
        apply_account_event(
            app.uow_factory,
            app.clock,
            _event(
                "AccountCreated",
                {
                    "account_id": account_id,
                    "customer_id": f"cus-{index}",
                    "currency": "EUR",
                    "time_zone": ZONES[index % len(ZONES)],
                    "tax_region": "NL",
                },
            ),
        )
        apply_account_event(
            app.uow_factory,
            app.clock,
            _event(
                "SubscriptionChanged",
                {
                    "account_id": account_id,
                    "plan_code": "voice-intl",
                    "effective_from": "2025-01-01T00:00:00+00:00",
                },
            ),
        )
    with prefix_file.open(encoding="utf-8") as rows:
        next(rows)
        return [line.split(",", 1)[0] for line in rows]


def parse_floor(path: Path) -> tuple[int, float]:
    began = time.perf_counter()
    count = 0
    with path.open("rb") as stream:
        for item in UsageFileReader(stream, ImportOptions()):
            count += isinstance(item, UsageRecord)
    return count, time.perf_counter() - began


def copy_floor(app: RatingApp, path: Path, sample_breakdown: str) -> tuple[int, float]:
    """Parse and COPY rows of the stored shape, without rating, into a twin of rated_usage."""
    with app.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS floor_copy"))
        connection.execute(text("CREATE TABLE floor_copy (LIKE rated_usage INCLUDING ALL)"))
    now = datetime.now(UTC)

    def rows() -> Iterator[tuple[Any, ...]]:
        with path.open("rb") as stream:
            for item in UsageFileReader(stream, ImportOptions()):
                if isinstance(item, UsageRecord):
                    yield (
                        item.record_id,
                        item.account_id,
                        item.service,
                        item.destination,
                        item.event_time,
                        item.quantity,
                        "second",
                        "EUR",
                        0,
                        item.quantity,
                        1_000_000_000,
                        800_000_000,
                        200_000_000,
                        "voice-intl",
                        1,
                        1,
                        "floor",
                        item.line,
                        sample_breakdown,
                        now,
                        True,
                        None,
                    )

    began = time.perf_counter()
    count = 0
    raw = app.engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY floor_copy ({', '.join(RATED_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows():
                copy.write_row(row)
                count += 1
        driver.commit()
    finally:
        raw.close()
    return count, time.perf_counter() - began


def end_to_end(app: RatingApp, path: Path, name: str) -> dict[str, Any]:
    """Import with the relay running beside it; timed until the last event is in Redis."""
    stop = threading.Event()
    relayed = {"count": 0}

    def relay() -> None:
        async def loop() -> None:
            # Its own client: an asyncio Redis client belongs to the loop that made it.
            client = connect(app.settings.redis_url)
            outbox = OutboxRelay(
                app.engine, orm.kit.outbox, client, app.clock, batch_size=RELAY_BATCH
            )
            try:
                await drain(outbox)
            finally:
                await client.aclose()

        async def drain(outbox: OutboxRelay) -> None:
            while True:
                moved = await outbox.relay_once()
                relayed["count"] += moved
                if not moved:
                    if stop.is_set():
                        return
                    await asyncio.sleep(0.05)

        asyncio.run(loop())

    worker = threading.Thread(target=relay, daemon=True)
    collector = _GcTimer()
    gc.callbacks.append(collector)
    cpu = _cpu()
    began = time.perf_counter()
    worker.start()
    result = app.importer.import_path(path, name, ImportOptions())
    imported = time.perf_counter() - began
    stop.set()
    worker.join()
    total = time.perf_counter() - began
    gc.callbacks.remove(collector)
    considered = result.file.rated + result.file.rejected
    return {
        "records": result.file.records,
        "rated": result.file.rated,
        "rejected": result.file.rejected,
        "status": str(result.file.status),
        "import_s": round(imported, 2),
        "with_relay_s": round(total, 2),
        "cdr_per_s": round(result.file.records / total),
        "cpu_s": round(_cpu() - cpu, 2),
        # CPU of this process (both threads) per record: independent of a busy machine.
        "cpu_us_per_cdr": round((_cpu() - cpu) / max(result.file.records, 1) * 1e6, 1),
        # Time in the cyclic garbage collector (all threads), part of the CPU above.
        "gc_us_per_cdr": round(collector.seconds / max(result.file.records, 1) * 1e6, 1),
        "gc_collections": collector.collections,
        "gc_s_by_generation": [round(t, 3) for t in collector.by_generation],
        "events_relayed": relayed["count"],
        "considered": considered,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000)
    parser.add_argument("--prefixes", type=int, default=60_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="reckon-import-bench-"))
    schema = f"bench_rating_{os.getpid()}"
    redis = EmbeddedRedis(folder / "redis").start()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "records": args.records,
        "prefixes": args.prefixes,
        "batch_size": args.batch_size,
    }
    try:
        os.environ.setdefault("OTEL_SDK_DISABLED", "true")
        settings = RatingSettings(
            service_token=SecretStr("bench-token-0123456789"),
            redis_url=redis.url,
            data_dir=folder,
            database_url=POSTGRES_URL,
            database_schema=schema,
            batch_size=args.batch_size,
        )
        app = bootstrap(settings, clock=ManualClock(datetime(2026, 4, 1, tzinfo=UTC)))
        print(f"catalog: {args.prefixes} prefixes; {args.accounts} accounts ...", flush=True)
        began = time.perf_counter()
        prefixes = prepare(app, folder, args.prefixes, args.accounts)
        report["setup_s"] = round(time.perf_counter() - began, 1)
        tariff = app.tariffs.current()
        report["rates"] = sum(len(v.rates) for p in tariff.catalog.plans for v in p.versions)

        small, large = folder / "small.csv", folder / "large.csv"
        print(f"writing {args.small:,} and {args.records:,} CDRs to {folder} ...", flush=True)
        write_cdrs(
            small, args.small, prefixes, account_ids(args.accounts), seed=1, id_prefix="small"
        )
        write_cdrs(
            large, args.records, prefixes, account_ids(args.accounts), seed=2, id_prefix="large"
        )
        report["file_mib"] = round(large.stat().st_size / 2**20, 1)
        report["rss_before_mib"] = round(_rss_mib(), 1)

        print("end to end, small file ...", flush=True)
        report["e2e_small"] = end_to_end(app, small, "small.csv")
        report["rss_after_small_mib"] = round(_rss_mib(), 1)
        print("end to end, full file ...", flush=True)
        report["e2e"] = end_to_end(app, large, "large.csv")
        report["rss_after_full_mib"] = round(_rss_mib(), 1)

        with app.engine.connect() as connection:
            sample = connection.execute(
                text("SELECT breakdown FROM rated_usage WHERE file_id IS NOT NULL LIMIT 1")
            ).scalar_one()
        print("floors: parse only, parse + COPY ...", flush=True)
        parsed, parse_s = parse_floor(large)
        copied, copy_s = copy_floor(app, large, sample)
        report["parse_floor_cdr_per_s"] = round(parsed / parse_s)
        report["copy_floor_cdr_per_s"] = round(copied / copy_s)
        app.close()
    finally:
        redis.stop()
        engine = create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)

    e2e = report["e2e"]
    print()
    print(f"records                  {args.records:>12,}  ({report['file_mib']} MiB CSV)")
    print(f"parse floor              {report['parse_floor_cdr_per_s']:>12,} CDR/s")
    print(f"parse + COPY floor       {report['copy_floor_cdr_per_s']:>12,} CDR/s")
    print(
        f"end to end               {e2e['cdr_per_s']:>12,} CDR/s  "
        f"(goal {GOAL:,}; {e2e['rated']:,} rated, {e2e['rejected']:,} rejected, "
        f"{e2e['events_relayed']} UsageRated/alert events relayed)"
    )
    print(f"  of the COPY floor      {e2e['cdr_per_s'] / report['copy_floor_cdr_per_s']:>12.0%}")
    print(f"  Python CPU per CDR     {e2e['cpu_us_per_cdr']:>12} us (importer, both threads)")
    print(
        f"  of which GC            {e2e['gc_us_per_cdr']:>12} us "
        f"(collections per generation {e2e['gc_collections']}, "
        f"seconds {e2e['gc_s_by_generation']})"
    )
    print(
        f"peak RSS                 {report['rss_after_small_mib']:>10} MiB after "
        f"{args.small:,}, {report['rss_after_full_mib']} MiB after {args.records:,} "
        f"(setup {report['rss_before_mib']} MiB)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
