"""Collection run: ``python -m bench.payments [--invoices N] [--batch B] [--database-url URL]``.

Issues N open invoices to N accounts, each with a sandbox card on file, and
collects them all with ``CollectionRun`` in batches of B (default 500): the path
the ``InvoiceIssued`` consumer takes for the events it reads in one go (request
ids, payments and attempts committed before the provider call, the sandbox's
``charge_many``, the answers with their ``PaymentSucceeded`` events in the outbox,
the allocation through invoicing's batch call, the effects marked done).
Invoicing is an in-memory stand-in here, so the figure is payments' own cost.
``--path single`` measures the one-invoice path (``Collector.collect_invoice``)
instead, as before the collection run existed.

The sandbox is configured as ``reckon up`` runs it: it journals every charge to a
file (``payments-sandbox.jsonl``). The floor is measured in the same run: the
sandbox's own calls alone, N charges with fresh keys made the way the run makes
them (``charge_many`` in batches of B). The old floor, ``charge`` one at a time
without a journal, is printed beside it. Reported: payments/s end to end, the
floors, the ratios, CPU ms per payment, and resident memory before and after the
timed part beside the growth N sandbox charge records alone cause (the sandbox,
like any PSP, remembers every charge; the run keeps nothing per payment). Default
N is small (2,000) so it runs in seconds; ``--invoices 100000`` gives the full figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from services.payments.adapters.orm import account_settings, payment_methods
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.adapters.unit_of_work import SqlPaymentsUnitOfWork, session_factory
from services.payments.bootstrap import MIGRATIONS
from services.payments.domain.model import MethodKind
from services.payments.domain.provider import CardDetails, ChargeRequest
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.collection_run import CollectionRun
from services.payments.service_layer.commands import CollectInvoice
from services.payments.service_layer.ports import (
    OpenInvoice,
    PaymentsUnitOfWork,
    PaymentToAllocate,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class MemoryInvoicing:
    invoices: dict[str, OpenInvoice] = field(default_factory=dict)

    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        return self.invoices.get(invoice_id)

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        return [i for i in self.invoices.values() if i.account_id == account_id]

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None:
        for invoice_id, amount in allocations:
            invoice = self.invoices[invoice_id]
            self.invoices[invoice_id] = replace(invoice, amount_due=invoice.amount_due - amount)

    def record_payments(self, payments: Sequence[PaymentToAllocate]) -> list[Exception | None]:
        # The batch call (invoicing's RecordPayments): one answer per payment.
        for payment in payments:
            self.record_payment(
                request_id=payment.request_id,
                payment_id=payment.payment_id,
                allocations=payment.allocations,
            )
        return [None] * len(payments)

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None:
        return None

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        return None


class NoCharging:
    def top_up(self, *, request_id: str, account_id: str, amount: Money) -> None:
        return None


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Resident memory now (Linux), to split growth between the collector and the sandbox."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * resource.getpagesize() / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--path", choices=["run", "single"], default="run")
    parser.add_argument("--workers", type=int, default=2, help="threads (--path single)")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--schema", default="bench_payments")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.invoices

    scratch = tempfile.mkdtemp(prefix="bench-payments-")
    url = args.database_url or f"sqlite:///{Path(scratch) / 'payments.db'}"
    schema = args.schema if not url.startswith("sqlite") else None
    if schema:
        reset = make_engine(url, None, instrument=False)
        with reset.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        reset.dispose()
    engine = make_engine(url, schema, instrument=False, pool_size=max(args.workers, 1) + 2)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    clock = ManualClock(START)
    sandbox = SandboxProvider(clock, journal=Path(scratch) / "payments-sandbox.jsonl")
    invoicing = MemoryInvoicing()

    def uow() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock)

    collector = Collector(uow, sandbox, invoicing, NoCharging(), clock)

    # Setup (not timed): N accounts with a card on file and an open invoice each.
    card = sandbox.tokenise_card(CardDetails("4242424242424242", 12, 2030), today=START.date())
    amount = Money.of("12.34", "EUR")
    batch = 5000
    for first in range(0, n, batch):
        numbers = range(first, min(n, first + batch))
        # Core inserts: the setup is not what is measured, and 100,000 ORM objects are slow.
        with engine.begin() as connection:
            connection.execute(
                payment_methods.insert(),
                [
                    {
                        "method_id": f"pm_{i:07d}",
                        "customer_id": f"cus_{i:07d}",
                        "account_id": f"acc_{i:07d}",
                        "kind": MethodKind.CARD,
                        "provider": "sandbox",
                        "token": card.token,
                        "card_brand": card.brand,
                        "card_last4": card.last4,
                        "card_exp_month": 12,
                        "card_exp_year": 2030,
                        "iban_masked": "",
                        "mandate_reference": "",
                        "mandate_signed_on": None,
                        "payment_reference": "",
                        "wallet_name": "",
                        "created_at": START,
                        "removed": False,
                    }
                    for i in numbers
                ],
            )
            connection.execute(
                account_settings.insert(),
                [
                    {
                        "account_id": f"acc_{i:07d}",
                        "customer_id": f"cus_{i:07d}",
                        "currency": "EUR",
                        "group_id": "",
                        "auto_collect": True,
                        "default_method_id": f"pm_{i:07d}",
                    }
                    for i in numbers
                ],
            )
        for i in numbers:
            invoicing.invoices[f"inv_{i:07d}"] = OpenInvoice(
                f"inv_{i:07d}", f"acc_{i:07d}", f"INV-{i}", START, None, amount
            )
    rss_before = peak_rss_mib()
    resident_before = rss_mib()

    def collect(i: int) -> None:
        payment = collector.collect_invoice(CollectInvoice(f"inv_{i:07d}", f"acc_{i:07d}", amount))
        assert payment is not None
        assert payment.state.value == "SUCCEEDED"

    run = CollectionRun(collector, batch_size=args.batch)
    cpu_started = time.process_time()
    started = time.perf_counter()
    if args.path == "run":
        # The invoices are handed over lazily: the run holds one batch at a time.
        summary = run.collect(
            CollectInvoice(f"inv_{i:07d}", f"acc_{i:07d}", amount) for i in range(n)
        )
        assert summary.succeeded == summary.allocated == n, summary
    elif args.workers == 0:  # inline, in this thread (for profiling)
        for i in range(n):
            collect(i)
    else:
        # Each worker walks its own stripe of invoices: no future per payment is kept
        # (pool.map would hold N futures and their results, and show as memory growth).
        def stripe(first: int) -> None:
            for i in range(first, n, args.workers):
                collect(i)

        with ThreadPoolExecutor(args.workers) as pool:
            for done in [pool.submit(stripe, w) for w in range(args.workers)]:
                done.result()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rss_after = peak_rss_mib()
    resident_after = rss_mib()
    paid = sum(1 for i in invoicing.invoices.values() if i.amount_due.is_zero())
    assert paid == n, f"{paid} of {n} invoices paid"
    with engine.connect() as connection:
        events = connection.exec_driver_sql(
            "SELECT count(*) FROM outbox WHERE event_type = 'PaymentSucceeded'"
        ).scalar_one()
    assert events == n, f"{events} PaymentSucceeded events for {n} payments"

    assert sandbox.charges_made == n, f"{sandbox.charges_made} charges for {n} invoices"

    # The floor: the sandbox's own calls alone, same count, same process, made the way
    # the run makes them (charge_many in batches, journaled as `reckon up` runs it).
    floor_sandbox = SandboxProvider(clock, journal=Path(scratch) / "floor-sandbox.jsonl")
    floor_token = floor_sandbox.tokenise_card(
        CardDetails("4242424242424242", 12, 2030), today=START.date()
    ).token
    floor_resident = rss_mib()
    floor_cpu_started = time.process_time()
    floor_started = time.perf_counter()
    if args.path == "run":
        for first in range(0, n, args.batch):
            floor_sandbox.charge_many(
                [
                    ChargeRequest(floor_token, amount, f"floor-{i}")
                    for i in range(first, min(n, first + args.batch))
                ]
            )
    else:
        for i in range(n):
            floor_sandbox.charge(token=floor_token, amount=amount, idempotency_key=f"floor-{i}")
    floor_elapsed = time.perf_counter() - floor_started
    floor_cpu = time.process_time() - floor_cpu_started
    floor_growth = rss_mib() - floor_resident
    # The old floor: `charge` one at a time, nothing journaled (a dict lookup).
    bare = SandboxProvider(clock)
    bare_token = bare.tokenise_card(
        CardDetails("4242424242424242", 12, 2030), today=START.date()
    ).token
    bare_started = time.perf_counter()
    for i in range(n):
        bare.charge(token=bare_token, amount=amount, idempotency_key=f"bare-{i}")
    bare_elapsed = time.perf_counter() - bare_started
    engine.dispose()

    result = {
        "invoices": n,
        "path": args.path,
        "batch": args.batch if args.path == "run" else 1,
        "workers": args.workers if args.path == "single" else 1,
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "payments_per_second": round(n / elapsed, 1),
        "floor_calls_per_second": round(n / floor_elapsed, 1),
        "ratio_to_floor": round((n / elapsed) / (n / floor_elapsed), 5),
        "floor_cpu_ms_per_call": round(floor_cpu * 1000 / n, 4),
        "bare_charge_calls_per_second": round(n / bare_elapsed, 1),
        "ratio_to_bare_charge": round(bare_elapsed / elapsed, 5),
        "seconds": round(elapsed, 2),
        # CPU of this process per payment: steadier than the rate on a shared machine.
        "cpu_ms_per_payment": round(cpu * 1000 / n, 3),
        "peak_rss_mib_before": round(rss_before, 1),
        "peak_rss_mib_after": round(rss_after, 1),
        # Resident growth over the timed run, and how much of it N sandbox charge records
        # alone make (the floor loop): a PSP remembers every charge; the collector nothing.
        "rss_growth_mib": round(resident_after - resident_before, 1),
        "sandbox_records_growth_mib": round(floor_growth, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
