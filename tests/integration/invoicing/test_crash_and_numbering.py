"""Bill runs survive a SIGKILLed worker; numbers stay gapless under 8 concurrent finalisers.

Both on PostgreSQL, where several processes really share the work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from services.common.clock import SystemClock
from services.common.db import make_engine
from services.common.errors import Aborted
from services.common.ids import new_id
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from services.common.outbox import OutboxRelay
from services.invoicing.adapters.orm import (
    bill_run_items,
    invoice_lines,
    invoices,
    kit,
    pending_items,
    rated_usage,
)
from services.invoicing.adapters.rating_pricer import NoFeesPricer
from services.invoicing.adapters.unit_of_work import SqlInvoicingUnitOfWork, session_factory
from services.invoicing.bootstrap import MIGRATIONS
from services.invoicing.domain.cycles import cycle_containing
from services.invoicing.domain.model import LineKind
from services.invoicing.domain.parties import BillRunScope, BillRunState, ItemStatus
from services.invoicing.service_layer import billruns, handlers, ingest
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork
from suite.redis_server import EmbeddedRedis
from tests.conftest import TEST_TOKEN, TestDatabase

ROOT = Path(__file__).resolve().parents[3]
ACCOUNTS = 150
RECORDS = 20

Factory = Callable[[], InvoicingUnitOfWork]


@pytest.fixture
def postgres(database: TestDatabase) -> TestDatabase:
    if database.kind != "postgres":
        pytest.skip("several worker processes share a run on PostgreSQL")
    return database


@pytest.fixture
def uow_factory(postgres: TestDatabase) -> Iterator[Factory]:
    engine = make_engine(postgres.url, postgres.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    yield lambda: SqlInvoicingUnitOfWork(sessions, clock=SystemClock())
    engine.dispose()


def _accounts(uow_factory: Factory, count: int, *, usage: int) -> list[str]:
    """Accounts created two cycles ago, each with ``usage`` records in the last cycle."""
    now = datetime.now(UTC)
    ended = cycle_containing(now, 1, "UTC").previous()
    ids = []
    for index in range(count):
        account_id, customer_id = new_id("acc"), new_id("cus")
        ids.append(account_id)
        facts = {
            "account_id": account_id,
            "customer_id": customer_id,
            "currency_code": "EUR",
            "time_zone": "UTC",
            "bill_cycle_day": 1,
            "tax_region": "NL",
            "payment_terms_days": 14,
            "create_time": (ended.start - timedelta(days=40)).isoformat(),
        }
        ingest.handle(uow_factory, new_id("evt"), "AccountCreated", facts)
        records = [
            {
                "record_id": f"{account_id}-{n}",
                "account_id": account_id,
                "service": "voice",
                "quantity": 60,
                "unit": "SEC",
                "net": {"amount": f"0.{index % 7}{n:02d}5", "currency": "EUR"},
                "event_time": (ended.start + timedelta(days=1, minutes=n)).isoformat(),
                "destination": "NL mobile" if n % 2 else "NL fixed",
            }
            for n in range(usage)
        ]
        ingest.handle(uow_factory, new_id("evt"), "UsageRated", {"records": records})
        handlers.add_pending_item(
            uow_factory,
            handlers.NewPendingItem(
                account_id,
                "Setup",
                Money.of("5", "EUR"),
                LineKind.PENDING_ITEM,
                "setup",
                "",
                None,
                "",
            ),
            handlers.Idem(),
        )
    return ids


async def _relay_all(uow_factory: Factory, postgres: TestDatabase, redis_url: str) -> None:
    engine = make_engine(postgres.url, postgres.schema, instrument=False)
    client = aioredis.from_url(redis_url)
    relay = OutboxRelay(engine, kit.outbox, client, SystemClock())
    while await relay.relay_once():
        pass
    await client.aclose()
    engine.dispose()


def _worker(postgres: TestDatabase, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RECKON_SERVICE_TOKEN": TEST_TOKEN,
        "REDIS_URL": redis_url,
        "INVOICING_DATABASE_URL": postgres.url,
        "INVOICING_DATABASE_SCHEMA": postgres.schema or "",
        "INVOICING_WORKERS": "1",
        "INVOICING_WORK_CLAIM_IDLE_MS": "500",
        "OTEL_SDK_DISABLED": "true",
    }
    env.pop("RATING_ADDR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "services.invoicing", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _count(uow_factory: Factory, run_id: str, status: ItemStatus) -> int:
    with uow_factory() as uow:
        run = uow.runs.get(run_id, details=False)
        assert run is not None
        return run.count(status)


@pytest.mark.slow
async def test_a_worker_killed_mid_run_leaves_exactly_one_invoice_per_account(
    uow_factory: Factory,
    postgres: TestDatabase,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    account_ids = await asyncio.to_thread(_accounts, uow_factory, ACCOUNTS, usage=RECORDS)
    started = billruns.start_bill_run(
        uow_factory,
        NoFeesPricer(),
        BillRunScope(bill_cycle_day=1),
        None,
        dry_run=False,
        auto_accept=True,
        accounts_per_message=50,  # several messages, so the kill lands between two of them
    )
    run_id = started.run.bill_run_id
    await _relay_all(uow_factory, postgres, redis_server.url)

    first = _worker(postgres, redis_server.url, tmp_path / "worker1.log")
    try:
        deadline = time.monotonic() + 60
        while _count(uow_factory, run_id, ItemStatus.FINALIZED) < 30:
            assert first.poll() is None, (tmp_path / "worker1.log").read_text()
            assert time.monotonic() < deadline, "the worker made no progress"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert _count(uow_factory, run_id, ItemStatus.PENDING) > 0, "killed too late to prove anything"

    second = _worker(postgres, redis_server.url, tmp_path / "worker2.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            with uow_factory() as uow:
                run = uow.runs.get(run_id)
            assert run is not None
            if run.state == BillRunState.ACCEPTED:
                break
            assert second.poll() is None, (tmp_path / "worker2.log").read_text()
            assert time.monotonic() < deadline, f"run stuck: {run.counts}"
            await asyncio.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)

    engine = make_engine(postgres.url, postgres.schema, instrument=False)
    with engine.connect() as connection:
        per_account = {
            row[0]: row[1]
            for row in connection.execute(
                select(invoices.c.account_id, func.count()).group_by(invoices.c.account_id)
            )
        }
        assert per_account == dict.fromkeys(account_ids, 1)
        records = connection.execute(
            select(func.count(), func.count(rated_usage.c.invoice_id)).select_from(rated_usage)
        ).one()
        assert tuple(records) == (ACCOUNTS * RECORDS, ACCOUNTS * RECORDS)
        wrong = connection.execute(
            select(func.count())
            .select_from(
                rated_usage.join(invoices, invoices.c.invoice_id == rated_usage.c.invoice_id)
            )
            .where(invoices.c.account_id != rated_usage.c.account_id)
        ).scalar_one()
        assert wrong == 0
        details = connection.execute(
            select(invoice_lines.c.invoice_id, func.sum(invoice_lines.c.detail_count)).group_by(
                invoice_lines.c.invoice_id
            )
        ).all()
        assert {int(total) for _, total in details} == {RECORDS}
        untaken = connection.execute(
            select(func.count())
            .select_from(pending_items)
            .where(pending_items.c.invoice_id.is_(None))
        ).scalar_one()
        assert untaken == 0
        numbers = sorted(
            int(n.rsplit("-", 1)[1]) for n in connection.scalars(select(invoices.c.number))
        )
        assert numbers == list(range(1, ACCOUNTS + 1))
        statuses = {
            row[0]: row[1]
            for row in connection.execute(
                select(bill_run_items.c.status, func.count())
                .where(bill_run_items.c.bill_run_id == run_id)
                .group_by(bill_run_items.c.status)
            )
        }
        assert statuses == {"FINALIZED": ACCOUNTS}
    engine.dispose()


async def test_numbers_are_gapless_under_8_concurrent_finalisers(uow_factory: Factory) -> None:
    account_ids = await asyncio.to_thread(_accounts, uow_factory, 40, usage=0)
    drafts = [
        handlers.create_immediate_invoice(
            uow_factory, NoFeesPricer(), account_id, False, handlers.Idem()
        ).invoice_id
        for account_id in account_ids
    ]

    def finalise(invoice_id: str) -> str:
        for _ in range(50):
            try:
                return handlers.finalize_invoice(uow_factory, invoice_id, handlers.Idem()).number
            except Aborted:
                time.sleep(0.01)
        raise AssertionError("never finalised")

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(finalise, drafts))
    assert sorted(int(n.rsplit("-", 1)[1]) for n in numbers) == list(range(1, 41))
    assert len(set(numbers)) == 40
