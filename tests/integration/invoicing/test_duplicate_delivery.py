"""A duplicate delivery of a work message that races the first, one account at a time
(``billruns._draft_one``, the fallback when a message fails as a whole).

The duplicate reads the work item as PENDING, then the first delivery drafts, finalises
and commits; the duplicate then finds that invoice. It must leave the item FINALIZED with
the first delivery's invoice (a work item leaves PENDING once), not mark it SKIPPED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from services.common.clock import SystemClock
from services.common.db import make_engine
from services.common.ids import new_id
from services.common.migrations import upgrade_to_head
from services.invoicing.adapters.invoice_repository import SqlInvoices
from services.invoicing.adapters.rating_pricer import NoFeesPricer
from services.invoicing.adapters.unit_of_work import SqlInvoicingUnitOfWork, session_factory
from services.invoicing.bootstrap import MIGRATIONS
from services.invoicing.domain.model import InvoiceStatus
from services.invoicing.domain.parties import BillRun, BillRunScope, BillRunState, ItemStatus
from services.invoicing.service_layer import billruns
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork
from tests.conftest import TestDatabase
from tests.integration.invoicing.test_crash_and_numbering import _accounts

Factory = Callable[[], InvoicingUnitOfWork]


@pytest.fixture
def uow_factory(database: TestDatabase) -> Iterator[Factory]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    yield lambda: SqlInvoicingUnitOfWork(sessions, clock=SystemClock())
    engine.dispose()


def _run_with_one_pending_item(uow_factory: Factory, account_id: str) -> str:
    now = datetime.now(UTC)
    run = BillRun(
        bill_run_id=new_id("run"),
        state=BillRunState.RUNNING,
        scope=BillRunScope(account_id=account_id),
        billing_date=now.date(),
        auto_accept=True,
        scheduled=False,
        create_time=now,
        update_time=now,
    )
    with uow_factory() as uow:
        uow.runs.add(run, [account_id])
        uow.commit()
    return run.bill_run_id


def test_a_racing_duplicate_delivery_leaves_the_item_finalized(
    uow_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (account_id,) = _accounts(uow_factory, 1, usage=3)
    run_id = _run_with_one_pending_item(uow_factory, account_id)
    real_exists = SqlInvoices.exists_for_cycle
    first_delivery_done: list[bool] = []

    def first_delivery_commits_in_between(
        self: SqlInvoices, account: str, cycle_key: str
    ) -> str | None:
        # The duplicate has read the item as PENDING; the first delivery now finishes.
        if not first_delivery_done:
            first_delivery_done.append(True)
            billruns._draft_one(uow_factory, NoFeesPricer(), run_id, account_id)
        return real_exists(self, account, cycle_key)

    monkeypatch.setattr(SqlInvoices, "exists_for_cycle", first_delivery_commits_in_between)
    billruns._draft_one(uow_factory, NoFeesPricer(), run_id, account_id)  # the duplicate
    monkeypatch.undo()

    assert first_delivery_done
    with uow_factory() as uow:
        invoice_id = uow.runs.item_invoice(run_id, account_id)
        assert uow.runs.item_status(run_id, account_id) == ItemStatus.FINALIZED
        assert uow.invoices.ids_of_run(run_id) == [invoice_id]
        invoice = uow.invoices.get(invoice_id, lines=False)
        assert invoice is not None
        assert invoice.status == InvoiceStatus.OPEN
    billruns.maybe_complete(uow_factory, run_id)
    run = billruns.get_bill_run(uow_factory, run_id)
    assert run.state == BillRunState.ACCEPTED
    assert (run.count(ItemStatus.FINALIZED), run.count(ItemStatus.SKIPPED)) == (1, 0)
