"""A collection run in a process of its own, for the tests that SIGKILL it mid-run.

``python -m tests.integration.payments.collection_run_child URL SCHEMA DATA_DIR N KILL``
collects invoices ``inv_0000``.. of the accounts the test set up, in batches of 10,
with the sandbox journaling to ``DATA_DIR`` and invoicing a ``FileInvoicing`` there.
``KILL`` > 0 kills the process with SIGKILL right after the provider answered the
KILL-th batch (charged, nothing recorded); 0 runs to the end.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.money import Money
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.adapters.unit_of_work import SqlPaymentsUnitOfWork, session_factory
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.collection_run import CollectionRun
from services.payments.service_layer.commands import CollectInvoice
from services.payments.service_layer.ports import OpenInvoice, PaymentsUnitOfWork
from tests.integration.payments.fakes import FakeCharging, FileInvoicing

START_TEXT = "2026-03-01T09:00:00+00:00"


def invoicing_of(data_dir: Path, n: int) -> FileInvoicing:
    issued = datetime.fromisoformat(START_TEXT)
    return FileInvoicing(
        data_dir / "invoicing.jsonl",
        {
            f"inv_{i:04d}": OpenInvoice(
                f"inv_{i:04d}", f"acc_{i:04d}", f"INV-{i}", issued, None, Money.of("7.5", "EUR")
            )
            for i in range(n)
        },
    )


def main(argv: Sequence[str]) -> None:
    url, schema, data_dir = argv[0], argv[1] or None, Path(argv[2])
    n, kill = int(argv[3]), int(argv[4])
    engine = make_engine(url, schema)
    sessions = session_factory(engine)
    clock = ManualClock(datetime.fromisoformat(START_TEXT))
    sandbox = SandboxProvider(clock, journal=data_dir / "payments-sandbox.jsonl")
    invoicing = invoicing_of(data_dir, n)

    def uow() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock)

    batches = 0

    def maybe_die(_: Sequence[str]) -> None:
        nonlocal batches
        batches += 1
        if batches == kill:
            os.kill(os.getpid(), signal.SIGKILL)

    run = CollectionRun(
        Collector(uow, sandbox, invoicing, FakeCharging(), clock),
        batch_size=10,
        after_provider_calls=maybe_die,
    )
    amount = invoicing.invoices["inv_0000"].amount_due
    summary = run.collect(CollectInvoice(f"inv_{i:04d}", f"acc_{i:04d}", amount) for i in range(n))
    print(summary)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
