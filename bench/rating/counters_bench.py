"""What drawing bill-cycle counters under the account lock costs an import (ADR 0014).

``python -m bench.rating.counters_bench [--records N] [--prefixes N] [--repeat N]``

The import bench's catalog, accounts and CDR generator (``bench.rating.import_bench``),
in a fresh PostgreSQL schema, imported end to end (parse, rate, COPY, outbox relayed to
a real Redis) alternately with two catalogs that differ in one thing:

* **baseline**: the catalog as it is: no allowance, so no counters; the pipelined
  path (batch N+1 rated while batch N is written);
* **counters**: the same catalog plus an included allowance of 600 voice seconds per
  bill cycle: every batch locks its accounts' counter rows, reads them, rates and
  stores in one transaction (no overlap of rating and writing).

Each run imports a new file of ``--records`` CDRs (new record ids). Figures: CDRs per
second of wall time and CPU of this process per CDR (the machine is shared: CPU per CDR
is the steadier figure), both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import create_engine, text

from bench.rating.data import account_ids, write_cdrs
from bench.rating.import_bench import POSTGRES_URL, end_to_end, prepare
from services.common.clock import ManualClock
from services.rating.bootstrap import bootstrap
from services.rating.config import RatingSettings
from services.rating.service_layer.catalog import apply_catalog
from suite.redis_server import EmbeddedRedis


def with_allowance(document: str) -> str:
    catalog = json.loads(document)
    for plan in catalog["plans"]:
        for version in plan["versions"]:
            version["allowances"] = [{"code": "incl", "service": "voice", "units": 600}]
    return json.dumps(catalog)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--prefixes", type=int, default=60_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="reckon-counters-bench-"))
    schema = f"bench_counters_{os.getpid()}"
    redis = EmbeddedRedis(folder / "redis").start()
    runs: list[dict[str, Any]] = []
    try:
        os.environ.setdefault("OTEL_SDK_DISABLED", "true")
        settings = RatingSettings(
            service_token=SecretStr("bench-token-0123456789"),
            redis_url=redis.url,
            data_dir=folder,
            database_url=POSTGRES_URL,
            database_schema=schema,
        )
        app = bootstrap(settings, clock=ManualClock(datetime(2026, 4, 1, tzinfo=UTC)))
        print(f"catalog: {args.prefixes} prefixes; {args.accounts} accounts ...", flush=True)
        prefixes = prepare(app, folder, args.prefixes, args.accounts)
        plain = (folder / "catalog.json").read_text(encoding="utf-8")
        documents = {"baseline": plain, "counters": with_allowance(plain)}
        accounts = account_ids(args.accounts)
        for round_number in range(args.repeat):
            for kind, document in documents.items():
                apply_catalog(
                    app.uow_factory,
                    app.tariffs,
                    app.clock,
                    document=document,
                    document_format="json",
                    source_name=f"{kind}.json",
                )
                assert app.tariffs.current().needs_counters == (kind == "counters")
                path = folder / f"{kind}-{round_number}.csv"
                write_cdrs(
                    path,
                    args.records,
                    prefixes,
                    accounts,
                    seed=10 + round_number,
                    id_prefix=f"{kind}-{round_number}",
                )
                print(f"round {round_number + 1}: {kind} ...", flush=True)
                began = time.perf_counter()
                figures = end_to_end(app, path, path.name)
                figures["wall_s"] = round(time.perf_counter() - began, 2)
                runs.append({"round": round_number + 1, "kind": kind, **figures})
                path.unlink()
        app.close()
    finally:
        redis.stop()
        engine = create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)

    print()
    print(f"{'round':>5} {'catalog':<9} {'CDR/s':>8} {'CPU µs/CDR':>11} {'rated':>8}")
    for run in runs:
        print(
            f"{run['round']:>5} {run['kind']:<9} {run['cdr_per_s']:>8,} "
            f"{run['cpu_us_per_cdr']:>11} {run['rated']:>8,}"
        )
    print(json.dumps({"python": sys.version.split()[0], "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
