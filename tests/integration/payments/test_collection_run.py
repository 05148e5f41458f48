"""The collection run (many invoices in batches) on SQLite and PostgreSQL, and SIGKILLed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from services.common.money import Money
from services.payments.adapters.sandbox import NEVER_ANSWERS, SandboxProvider
from services.payments.domain.model import MethodKind, PaymentState
from services.payments.domain.provider import CardDetails, ChargeRequest, ProviderTimeout
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.collection_run import CollectionRun
from services.payments.service_layer.commands import AddPaymentMethod, CollectInvoice
from services.payments.service_layer.invoice_events import (
    IssuedInvoice,
    invoice_reference,
    on_invoices_issued,
)
from services.payments.service_layer.methods import MethodsService
from tests.conftest import TestDatabase
from tests.integration.payments.collection_run_child import START_TEXT, invoicing_of
from tests.integration.payments.conftest import PaymentsWorld, eur
from tests.integration.payments.fakes import FakeCharging

CARDS = {
    "acc_ok1": "4242424242424242",
    "acc_ok2": "4242424242424242",
    "acc_soft": "4000000000009995",  # insufficient_funds: retried
    "acc_hard": "4000000000009987",  # lost_card: never retried
    "acc_lost": NEVER_ANSWERS,  # charged, the answer never arrives
}


def _payments_by_invoice(world: PaymentsWorld) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with world.uow() as uow:
        for account in [*CARDS, "acc_none"]:
            for payment in uow.payments.history(account_id=account, limit=10):
                found.setdefault(payment.invoice_ids, []).append(payment.payment_id)
    return found


def test_a_run_collects_every_test_card_as_one_invoice_at_a_time_would(
    world: PaymentsWorld,
) -> None:
    for account, number in CARDS.items():
        world.card(account, number)
        world.invoicing.issue(f"inv_{account}", account, "20")
    world.invoicing.issue("inv_acc_none", "acc_none", "20")  # no method on file
    commands = [CollectInvoice(f"inv_{a}", a, eur("20")) for a in [*CARDS, "acc_none", "acc_ok1"]]
    run = CollectionRun(world.collector, batch_size=2)
    summary = run.collect(commands)
    assert (summary.invoices, summary.started, summary.skipped) == (7, 5, 1)
    assert (summary.succeeded, summary.failed, summary.unresolved) == (2, 2, 1)
    assert summary.replayed == 1  # acc_ok1 twice, in different batches: one payment
    assert summary.allocated == 2
    by_invoice = _payments_by_invoice(world)
    assert sorted(by_invoice) == sorted(f"inv_{a}" for a in CARDS)
    assert all(len(ids) == 1 for ids in by_invoice.values())
    states = {i: world.payment(ids[0]) for i, ids in by_invoice.items()}
    assert states["inv_acc_ok1"].state is PaymentState.SUCCEEDED
    assert not states["inv_acc_ok1"].effects_pending
    assert all(a.applied for a in states["inv_acc_ok1"].allocations)
    assert world.invoicing.due("inv_acc_ok1") == eur("0")
    soft, hard = states["inv_acc_soft"], states["inv_acc_hard"]
    assert (soft.state, soft.decline_code, soft.hard_decline) == (
        PaymentState.FAILED,
        "insufficient_funds",
        False,
    )
    assert soft.next_retry_at == world.clock.now() + timedelta(days=1)
    assert hard.hard_decline
    assert hard.next_retry_at is None
    assert states["inv_acc_lost"].state is PaymentState.UNKNOWN
    assert world.invoicing.due("inv_acc_lost") == eur("20")  # never guessed
    assert sorted(world.outbox_types()) == ["PaymentFailed"] * 2 + ["PaymentSucceeded"] * 2
    payloads = [json.loads(e)["payload"] for e in world.outbox_payloads()]
    failed = {p["decline_code"]: p for p in payloads if "decline_code" in p}
    assert failed["lost_card"]["hard_decline"] is True
    assert failed["insufficient_funds"]["attempt"] == 1
    # Rows the run wrote are rows the one-payment code reads and changes: the janitor
    # resolves the lost answer, the retry runner the soft decline.
    world.clock.advance(timedelta(minutes=5))
    assert world.collector.run_janitor() == 1
    assert world.state(states["inv_acc_lost"].payment_id) is PaymentState.SUCCEEDED
    world.clock.advance(timedelta(days=1))
    assert world.collector.run_retries() == 1
    # The same invoices again (a redelivered batch): nothing new, nothing charged again.
    charged = world.sandbox.charges_made
    again = run.collect(commands)
    assert again.replayed == 6
    assert again.started == 0
    assert world.sandbox.charges_made == charged
    # And the one-invoice path sees the run's request ids as its own.
    payment = world.collector.collect_invoice(commands[0])
    assert payment is not None
    assert payment.payment_id == by_invoice["inv_acc_ok1"][0]


def test_the_sandbox_batch_call_charges_each_key_once(world: PaymentsWorld) -> None:
    token = world.sandbox.tokenise_card(
        CardDetails("4242424242424242", 12, 2030), today=world.clock.now().date()
    ).token
    requests = [ChargeRequest(token, eur("3"), f"key-{i}") for i in range(3)]
    first = world.sandbox.charge_many(requests + requests[:1])
    again = world.sandbox.charge_many(requests)
    assert [r.provider_reference for r in first[:3]] == [  # type: ignore[union-attr]
        r.provider_reference  # type: ignore[union-attr]
        for r in again
    ]
    assert first[3] == first[0]
    assert world.sandbox.charges_made == 3
    world.sandbox.answering = False
    assert all(isinstance(o, ProviderTimeout) for o in world.sandbox.charge_many(requests))


def _count(engine: Engine, table: str, where: str = "TRUE") -> int:
    with engine.connect() as connection:
        query = text(f"SELECT count(*) FROM {table} WHERE {where}")
        return int(connection.execute(query).scalar_one())


def _child(database: TestDatabase, data_dir: Path, n: int, kill: int) -> int:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.payments.collection_run_child",
            database.url,
            database.schema or "",
            str(data_dir),
            str(n),
            str(kill),
        ],
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def _cards_on_file(world: PaymentsWorld, journal: Path, n: int) -> None:
    assert world.clock.now().isoformat() == START_TEXT
    sandbox = SandboxProvider(world.clock, journal=journal)
    methods = MethodsService(world.collector.uow_factory, sandbox, world.invoicing, world.clock)
    for i in range(n):
        methods.add_method(
            AddPaymentMethod(
                account_id=f"acc_{i:04d}",
                customer_id=f"cus_{i:04d}",
                currency="EUR",
                kind=MethodKind.CARD,
                card=CardDetails("4242424242424242", 12, 2030, "123"),
            )
        )


def test_a_run_killed_mid_batch_then_run_again_pays_every_invoice_once(
    world: PaymentsWorld, database: TestDatabase, tmp_path: Path
) -> None:
    n = 45
    clock = world.clock
    journal = tmp_path / "payments-sandbox.jsonl"
    _cards_on_file(world, journal, n)
    # Killed right after the sandbox charged the 3rd batch of 10, before recording it.
    assert _child(database, tmp_path, n, kill=3) == -signal.SIGKILL
    assert _count(world.engine, "payments") == 30  # 3 batches committed before charging
    assert _count(world.engine, "payments", "state = 'PENDING'") == 10
    # Run again to the end: the 30 are replayed, the other 15 collected.
    assert _child(database, tmp_path, n, kill=0) == 0
    assert _count(world.engine, "payments") == n
    # This process takes over (the same database, journal and invoicing): the janitor
    # asks the sandbox about the 10 charged-but-unrecorded ones with their keys.
    sandbox = SandboxProvider(clock, journal=journal)
    invoicing = invoicing_of(tmp_path, n)
    collector = Collector(world.collector.uow_factory, sandbox, invoicing, FakeCharging(), clock)
    assert collector.run_janitor() == 0  # not before 5 minutes
    clock.advance(timedelta(minutes=5))
    assert collector.run_janitor() == 10
    assert collector.run_effects() == 0
    assert sandbox.charges_made == n  # every invoice charged once, none twice
    assert _count(world.engine, "payments", "state = 'SUCCEEDED'") == n
    assert _count(world.engine, "outbox", "event_type = 'PaymentSucceeded'") == n
    recorded = invoicing.recorded()
    assert len(recorded) == n
    assert sorted(i for _, i, _ in recorded.values()) == sorted(invoicing.invoices)
    assert all(invoicing.due(i) == Money.zero("EUR") for i in invoicing.invoices)


def test_a_run_killed_at_any_moment_then_run_again_pays_every_invoice_once(
    world: PaymentsWorld, database: TestDatabase, tmp_path: Path
) -> None:
    n = 300
    clock = world.clock
    journal = tmp_path / "payments-sandbox.jsonl"
    _cards_on_file(world, journal, n)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.payments.collection_run_child",
            database.url,
            database.schema or "",
            str(tmp_path),
            str(n),
            "0",
        ],
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # SIGKILL wherever the run is once some batches went through: between commits,
        # in the sandbox's batch call, while recording answers or allocations.
        while _count(world.engine, "payments") < 40 and child.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    killed_at = _count(world.engine, "payments")
    assert child.returncode == -signal.SIGKILL  # killed mid-run, not after it ended
    assert killed_at < n
    assert _child(database, tmp_path, n, kill=0) == 0
    assert _count(world.engine, "payments") == n
    sandbox = SandboxProvider(clock, journal=journal)
    invoicing = invoicing_of(tmp_path, n)
    collector = Collector(world.collector.uow_factory, sandbox, invoicing, FakeCharging(), clock)
    clock.advance(timedelta(minutes=5))
    while collector.run_janitor():
        pass
    # A batch committed but killed before the sandbox took it is NOT_FOUND there: a soft
    # failure, retried the next day; charged then, once.
    clock.advance(timedelta(days=1))
    collector.run_retries()
    collector.run_effects()
    assert sandbox.charges_made == n, f"killed with {killed_at} payments written"
    assert _count(world.engine, "payments", "state = 'SUCCEEDED'") == n
    assert _count(world.engine, "payments", "effects_pending = TRUE") == 0
    assert _count(world.engine, "outbox", "event_type = 'PaymentSucceeded'") == n
    recorded = invoicing.recorded()
    assert sorted(i for _, i, _ in recorded.values()) == sorted(invoicing.invoices)
    assert all(invoicing.due(i) == Money.zero("EUR") for i in invoicing.invoices)


def test_two_runs_over_the_same_invoices_at_once_charge_each_invoice_once(
    world: PaymentsWorld,
) -> None:
    n = 40
    for i in range(n):
        world.card(f"acc_{i:04d}")
        world.invoicing.issue(f"inv_{i:04d}", f"acc_{i:04d}", "4")
    commands = [CollectInvoice(f"inv_{i:04d}", f"acc_{i:04d}", eur("4")) for i in range(n)]
    runs = [CollectionRun(world.collector, batch_size=10) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda run: run.collect(commands), runs))
    assert world.sandbox.charges_made == n
    assert _count(world.engine, "payments") == n
    assert _count(world.engine, "payments", "state = 'SUCCEEDED'") == n
    assert all(world.invoicing.due(f"inv_{i:04d}") == eur("0") for i in range(n))


def _issued(invoice_id: str, account: str, amount: str, *, resend: bool = False) -> IssuedInvoice:
    return IssuedInvoice(
        f"evt-{invoice_id}",
        invoice_id,
        f"INV-{invoice_id}",
        account,
        f"cus_{account}",
        "EUR",
        eur(amount),
        date(2026, 3, 15),
        resend,
        group_id="grp1",
    )


def test_invoices_issued_together_are_collected_by_one_run_as_one_by_one(
    world: PaymentsWorld,
) -> None:
    world.card("acc_card")
    for invoice_id, account, amount in [
        ("inv_a", "acc_card", "10"),
        ("inv_b", "acc_card", "5"),
        ("inv_new1", "acc_new", "7"),  # no settings yet: two invoices of it in one read
        ("inv_new2", "acc_new", "8"),
        ("inv_zero", "acc_card", "0"),
    ]:
        world.invoicing.issue(invoice_id, account, amount)
    summary = on_invoices_issued(
        CollectionRun(world.collector),
        [
            _issued("inv_a", "acc_card", "10"),
            _issued("inv_b", "acc_card", "5"),
            _issued("inv_new1", "acc_new", "7"),
            _issued("inv_new2", "acc_new", "8"),
            _issued("inv_zero", "acc_card", "0"),
            _issued("inv_a", "acc_card", "10", resend=True),
        ],
    )
    assert (summary.started, summary.succeeded, summary.skipped) == (2, 2, 2)
    assert world.invoicing.due("inv_a") == eur("0")
    assert world.invoicing.due("inv_b") == eur("0")
    assert world.invoicing.due("inv_new1") == eur("7")  # nothing on file to charge
    with world.uow() as uow:
        remembered = uow.settings.get("acc_new")
        assert remembered is not None
        assert remembered.group_id == "grp1"
        for invoice_id in ("inv_a", "inv_b", "inv_new1", "inv_new2", "inv_zero"):
            found = uow.settings.invoice_by_reference(
                invoice_reference(f"INV-{invoice_id}", invoice_id)
            )
            assert found is not None
            assert found[0] == invoice_id
    # Redelivered (the stream gave them again): kept once, charged once.
    again = on_invoices_issued(CollectionRun(world.collector), [_issued("inv_a", "acc_card", "10")])
    assert again.started == 0
    assert world.sandbox.charges_made == 2
