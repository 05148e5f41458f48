"""The daily run is set-based (ADR 0070): paid accounts get no work item, and a work
message costs the same statements whatever number of accounts it carries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from services.dunning.service_layer import runs
from tests.integration.dunning.conftest import Dunning


@contextmanager
def counted(dunning: Dunning) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]).split(None, 1)[0])

    event.listen(dunning.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(dunning.engine, "before_cursor_execute", count)


def test_paid_accounts_get_no_work_item_and_a_message_costs_the_same_statements(
    dunning: Dunning,
) -> None:
    for n in range(1, 13):
        paid = n > 8
        dunning.invoice(
            f"inv_{n}",
            f"acc_{n:02d}",
            customer_id=f"cus_{n}",
            status="PAID" if paid else "OPEN",
            amount_due="0" if paid else None,
        )
    day = dunning.day(7)
    run = runs.start_run(dunning.uow, day)
    assert run.accounts_total == 8  # the four paid accounts are not candidates
    with dunning.uow() as uow:
        pending = list(uow.runs.pending(run.run_id))
    assert pending == [f"acc_{n:02d}" for n in range(1, 9)]
    with counted(dunning) as small:
        runs.process(dunning.uow, run.run_id, pending[:2])
    with counted(dunning) as large:
        runs.process(dunning.uow, run.run_id, pending[2:7])
    assert len(large) == len(small), (small, large)
    runs.process(dunning.uow, run.run_id, pending[7:])  # the last one also ends the run
    assert dunning.reactions("acc_08") == [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")]
    with dunning.uow() as uow:
        done = uow.runs.get(run.run_id)
    assert done is not None
    assert (done.state, done.accounts_done) == ("COMPLETED", 8)
