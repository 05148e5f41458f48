"""CPU per CDR of each in-process stage of the import, without a database.

``python -m bench.rating.stage_bench [--records N] [--repeat N]``

Builds the core benchmark's catalog (60,000 prefixes) and 1,000 accounts in
memory, writes a CDR file in the import benchmark's layout and times, best of
``--repeat`` runs, the stages the importer runs per record in its rating thread
and its writer thread: **parse** (``UsageFileReader``), **rate**
(``rate_usage``: account plan, ``UsageEvent``, the engine), **store**
(``stored_rating``: the row, breakdown JSON and ``UsageRated`` item) and **event
JSON** (the outbox's encoding of ``UsageRated`` events of 1,000 items). SQL,
COPY, the relay and thread hand-offs are not in these figures: the import
benchmark's "Python CPU per CDR" minus their sum is what those cost.

The garbage collector is disabled while timing (the import bench reports its
share), and a digest of every stored row and event item is printed, so two
versions can be checked to store the same bytes.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.rating import data
from bench.rating.core_bench import build_workload
from bench.rating.data import ZONES, account_ids, write_cdrs
from services.rating.service_layer.model import KnownAccount, PlanAssignment
from services.rating.service_layer.pricing import Subscriber, rate_usage, stored_rating
from services.rating.service_layer.tariffs import Tariff
from services.rating.service_layer.usage_formats import ImportOptions, UsageFileReader, UsageRecord

_encode = json.JSONEncoder(separators=(",", ":")).encode


def _accounts(count: int) -> dict[str, Subscriber]:
    accounts = {}
    for index, account_id in enumerate(account_ids(count)):
        known = KnownAccount(
            account_id=account_id,
            customer_id=f"cus-{index}",
            currency="EUR",
            time_zone=ZONES[index % len(ZONES)],
            tax_region="NL",
            group_code="",
            status="active",
            updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        known.assignments = [
            PlanAssignment(
                account_id=account_id,
                plan_code="voice-intl",
                effective_from=datetime(2025, 1, 1, tzinfo=UTC),
            )
        ]
        accounts[account_id] = Subscriber(known)
    return accounts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    tariff = Tariff.of(1, build_workload(1, 60_000, 20260301).engine)
    prefixes = [prefix for prefix, _ in data.prefix_rows(60_000, random.Random(20260301))]
    accounts = _accounts(1000)
    now = datetime(2026, 4, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="reckon-stage-bench-") as folder:
        path = Path(folder) / "cdrs.csv"
        write_cdrs(path, args.records, prefixes, list(accounts), seed=2)

        def parse() -> list[UsageRecord]:
            with path.open("rb") as stream:
                return [
                    item
                    for item in UsageFileReader(stream, ImportOptions())
                    if isinstance(item, UsageRecord) and item.account_id in accounts
                ]

        records = parse()

        def rate() -> list[tuple[UsageRecord, Any, Subscriber, str]]:
            return [
                (record, *rate_usage(tariff, accounts[record.account_id], record))
                for record in records
            ]

        rated = rate()

        def store() -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
            return [
                stored_rating(r, c, tariff, a, p, file_id="imp-1", line=r.line, rated_at=now)
                for r, c, a, p in rated
            ]

        stored = store()

        def encode() -> None:
            items = [item for _, item in stored]
            for start in range(0, len(items), 1000):
                _encode({"payload": {"records": items[start : start + 1000]}})

        digest = hashlib.sha256()
        for row, item in stored:
            digest.update((repr(row) + _encode(item)).encode())
        stages: dict[str, Callable[[], object]] = {
            "parse": parse,
            "rate": rate,
            "store": store,
            "event JSON": encode,
        }
        best = dict.fromkeys(stages, float("inf"))
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            for _ in range(args.repeat):
                for name, stage in stages.items():
                    began = time.process_time()
                    stage()
                    best[name] = min(best[name], time.process_time() - began)
        finally:
            gc.enable()
    print(f"records {len(records):,}; stored rows and items digest {digest.hexdigest()[:16]}")
    for name, seconds in best.items():
        print(f"{name:<12} {seconds / len(records) * 1e6:8.2f} us per CDR (best of {args.repeat})")
    total = sum(best.values()) / len(records) * 1e6
    print(f"{'sum':<12} {total:8.2f} us per CDR")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
