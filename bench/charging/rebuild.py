"""``python -m bench.charging.rebuild``: rebuild time of an account with a long ledger.

Makes one account whose ledger holds ``--entries`` rows (1,000,000 by default, written
straight into ``ledger_entries``, alternating small credits and debits of its main
bucket), then times its rebuild after a Redis flush (``AccountLoader.ensure_loaded``:
the SQL snapshot plus the restore script; the fence is set to 1 ms so it is not
counted) and the SQL snapshot alone:

- **without a checkpoint**: the balance is the sum of the whole ledger (as before
  ADR 0036);
- **with a checkpoint**: after the maintenance pass checkpointed the account, plus
  ``--tail`` entries written after it (the rows a rebuild still reads).

SQLite in a temporary directory by default; ``--postgres URL`` runs on PostgreSQL in a
schema of its own (dropped afterwards). Redis is started here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import create_engine, text

from services.charging.adapters import orm
from services.charging.bootstrap import ChargingApp, bootstrap
from services.charging.config import ChargingSettings
from services.charging.domain.accounts import AccountPolicy, BillingMode
from services.charging.service_layer.commands import SetPolicy
from suite.redis_server import EmbeddedRedis

ACCOUNT = "long-ledger"


def _fill(app: ChargingApp, start: int, count: int) -> None:
    now = datetime.now(UTC)
    chunk = 50_000
    with app.engine.begin() as connection:
        for first in range(start, start + count, chunk):
            connection.execute(
                orm.ledger_entries.insert(),
                [
                    {
                        "entry_id": f"bench-{i}",
                        "account_id": ACCOUNT,
                        "bucket_id": "main-EUR",
                        "direction": "C" if i % 2 == 0 else "D",
                        "amount": 1_000 + i % 7,
                        "unit": "m:EUR",
                        "kind": "TOP_UP" if i % 2 == 0 else "USAGE",
                        "session_id": "",
                        "request_number": 0,
                        "rating_group": 0,
                        "reference": "",
                        "reason": "",
                        "request_key": None,
                        "created_at": now,
                    }
                    for i in range(first, min(first + chunk, start + count))
                ],
            )


async def _rebuild(app: ChargingApp, repeat: int) -> tuple[float, float, int]:
    """(median s of a rebuild, median s of the SQL snapshot alone, main balance)."""
    rebuilds, snapshots = [], []
    balance = 0
    for _ in range(repeat):
        await app.redis.flushdb()
        await app.store.load()
        began = time.perf_counter()
        await app.loader.ensure_loaded(ACCOUNT)
        rebuilds.append(time.perf_counter() - began)
        began = time.perf_counter()
        snapshot = await asyncio.to_thread(app.loader.snapshot, ACCOUNT)
        snapshots.append(time.perf_counter() - began)
        assert snapshot is not None
        balance = int(next(b["a"] for b in snapshot.buckets if b["id"] == "main-EUR"))
    return statistics.median(rebuilds), statistics.median(snapshots), balance


async def run(entries: int, tail: int, repeat: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="reckon-charging-rebuild-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis").start()
        schema = f"bench_rebuild_{int(time.time())}" if postgres else None
        try:
            settings = ChargingSettings(
                service_token=SecretStr("x" * 24),
                redis_url=redis.url,
                data_dir=Path(tmp),
                database_url=postgres,
                database_schema=schema,
                rebuild_fence_ms=1,
            )
            app = bootstrap(settings)
            await app.start()
            try:
                policy = AccountPolicy(ACCOUNT, BillingMode.PREPAID, "EUR")
                await app.handlers.set_policy(SetPolicy(policy))
                began = time.perf_counter()
                await asyncio.to_thread(_fill, app, 0, entries)
                print(f"wrote {entries:,} ledger entries in {time.perf_counter() - began:.1f} s")
                before = await _rebuild(app, repeat)
                # Two passes: the first notes the newest seq, the second (past the settle
                # delay, the 1 ms fence here) checkpoints through it.
                app.maintenance.checkpoint_once(chunk=entries + 1)
                await asyncio.sleep(0.01)
                began = time.perf_counter()
                made = app.maintenance.checkpoint_once(chunk=entries + 1)
                took = time.perf_counter() - began
                print(f"checkpoint pass: {made} account(s) in {took:.2f} s")
                await asyncio.to_thread(_fill, app, entries, tail)
                after = await _rebuild(app, repeat)
                database = "PostgreSQL" if postgres else "SQLite"
                print(f"{database}, {entries:,} entries, median of {repeat}:")
                print("ledger read                    rebuild s  SQL snapshot s  main balance")
                for name, (rebuild, snapshot, balance) in (
                    ("whole ledger (no checkpoint)", before),
                    (f"checkpoint + {tail:,} entries", after),
                ):
                    print(f"{name:<29} {rebuild:>10.3f}  {snapshot:>14.3f}  {balance:>12,}")
            finally:
                await app.close()
                if postgres and schema:
                    engine = create_engine(postgres)
                    with engine.begin() as connection:
                        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                    engine.dispose()
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=1_000, help="entries after the checkpoint")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(run(args.entries, args.tail, args.repeat, args.postgres))


if __name__ == "__main__":
    main()
