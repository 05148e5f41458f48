"""The daily run on SQLite and PostgreSQL with the default policy, on a ManualClock.

Each default level is reached on its day with its reactions applied once; a rerun of
a day changes nothing; a run that crashes mid-way is resumed by a rerun that judges
only what was left, and applies nothing twice.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.dunning.adapters.clients import CsvCollectionsExport
from services.dunning.adapters.orm import dunning_reactions, kit
from services.dunning.adapters.repositories import SqlRuns
from services.dunning.service_layer import runs
from services.dunning.service_layer.effects import Effects
from tests.integration.dunning.conftest import DUE, Dunning

EXPECTED = {
    1: [(1, "EMAIL", "DONE")],
    7: [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")],
    14: [(3, "EMAIL", "DONE"), (3, "SUSPEND", "PENDING")],
    30: [(4, "BAR", "PENDING"), (4, "COLLECTIONS", "PENDING"), (4, "EMAIL", "DONE")],
}


def test_each_default_level_is_reached_on_its_day_with_its_reactions_once(
    dunning: Dunning,
) -> None:
    dunning.invoice("inv_1")
    seen: list[tuple[int, str, str]] = []
    for day in (0, 1, 2, 6, 7, 8, 13, 14, 15, 29, 30, 31):
        run = dunning.run(day)
        assert run.state == "COMPLETED"
        new = sorted(set(dunning.reactions()) - set(seen)) if day in EXPECTED else []
        now = dunning.reactions()
        assert sorted(now[len(seen) :]) == EXPECTED.get(day, []), f"day {day}"
        assert new == EXPECTED.get(day, [])
        seen = now
    levels = [e["level"] for e in dunning.events("DunningLevelReached")]
    assert levels == [1, 2, 3, 4]
    messages = [
        (e["level"], e["channel"], e["template"]) for e in dunning.events("DunningMessageDue")
    ]
    assert messages == [
        (1, "EMAIL", "dunning_reminder"),
        (2, "SMS", "dunning_reminder_sms"),
        (3, "EMAIL", "dunning_suspended"),
        (4, "EMAIL", "dunning_collections"),
    ]
    (handed,) = dunning.events("AccountHandedToCollections")
    assert handed["amount_overdue"] == {"amount": "100.00", "currency": "EUR"}
    assert handed["days_past_due"] == 30
    with dunning.uow() as uow:
        account = uow.accounts.get("acc_1")
        invoice = uow.invoices.get("inv_1")
    assert account is not None
    assert invoice is not None
    assert (account.level, account.service_action) == (4, "BARRED")
    assert invoice.fees_charged == 10
    assert invoice.highest_level == 4


def test_a_rerun_of_the_same_day_changes_nothing(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    first = dunning.run(7)
    reactions = dunning.reactions()
    with dunning.engine.connect() as connection:
        events = connection.execute(select(func.count()).select_from(kit.outbox)).scalar_one()
    again = runs.run_inline(dunning.uow, DUE.replace(day=8))
    assert again.run_id == first.run_id
    assert again.accounts_done == 1
    assert dunning.reactions() == reactions
    with dunning.engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(kit.outbox)).scalar_one() == events
        )


class Crash(RuntimeError):
    pass


def test_a_crash_mid_run_then_a_rerun_applies_everything_exactly_once(
    dunning: Dunning, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in (1, 2, 3):
        dunning.invoice(f"inv_{n}", f"acc_{n}", customer_id=f"cus_{n}")
    # One account per work message, so the crash hits the second message only.
    monkeypatch.setattr(runs, "ACCOUNTS_PER_MESSAGE", 1)
    original = SqlRuns.finish_items

    def crash_on_second(
        self: SqlRuns, run_id: str, account_ids: list[str], *, escalated: set[str]
    ) -> None:
        if "acc_2" in account_ids:
            raise Crash("the worker died while judging acc_2")
        original(self, run_id, account_ids, escalated=escalated)

    monkeypatch.setattr(SqlRuns, "finish_items", crash_on_second)
    with pytest.raises(Crash):
        dunning.run(7)
    with dunning.uow() as uow:
        run = uow.runs.by_date(dunning.day(7))
        assert run is not None
        assert run.state == "RUNNING"
        assert list(uow.runs.pending(run.run_id)) == ["acc_2", "acc_3"]
    # acc_2's transaction rolled back whole: none of its reactions exist.
    assert dunning.reactions("acc_1") == [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")]
    assert dunning.reactions("acc_2") == []

    monkeypatch.setattr(SqlRuns, "finish_items", original)
    rerun = dunning.run(7)
    assert rerun.run_id == run.run_id
    assert (rerun.state, rerun.accounts_done) == ("COMPLETED", 3)
    for account in ("acc_1", "acc_2", "acc_3"):
        assert dunning.reactions(account) == [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")]
    with dunning.engine.connect() as connection:
        fees = connection.execute(
            select(func.count()).where(dunning_reactions.c.kind == "LATE_FEE")
        ).scalar_one()
    assert fees == 3
    assert len(dunning.events("DunningLevelReached")) == 3


def test_a_first_run_late_applies_the_skipped_levels_but_one_message(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    dunning.run(14)
    assert sorted(dunning.reactions()) == [
        (2, "LATE_FEE", "PENDING"),
        (3, "EMAIL", "DONE"),
        (3, "SUSPEND", "PENDING"),
    ]


def test_the_scheduler_catches_up_each_missed_day_in_order(dunning: Dunning) -> None:
    from services.dunning.entrypoints.scheduler import DailyScheduler

    dunning.invoice("inv_1")
    scheduler = DailyScheduler(dunning.uow, dunning.clock, run_hour=1, inline=True)
    dunning.day(1)  # 09:00 UTC, past the run hour
    assert scheduler.run_once() == 1
    assert scheduler.run_once() == 0  # the day's run is done
    # The clock jumps a week: days 2..8 are each run once, in order, so the level-2
    # SMS goes out for day 7 and nothing is skipped.
    dunning.day(8)
    assert scheduler.run_once() == 7
    with dunning.uow() as uow:
        dates = [uow.runs.by_date(DUE + timedelta(days=n)) for n in range(1, 9)]
    assert all(run is not None and run.state == "COMPLETED" for run in dates)
    assert [(e["level"], e["days_past_due"]) for e in dunning.events("DunningLevelReached")] == [
        (1, 1),
        (2, 7),
    ]


def test_collections_hand_over_writes_the_days_export_file_once(
    dunning: Dunning, tmp_path: Path
) -> None:
    dunning.invoice("inv_1", amount="120.00")
    dunning.invoice("inv_2", "acc_2", amount="30.00", customer_id="cus_2")
    dunning.run(30)
    export = CsvCollectionsExport(tmp_path)
    effects = Effects(dunning.uow, None, None, export)
    assert effects.dispatch() == 2  # the two COLLECTIONS reactions; the rest wait for peers
    assert effects.dispatch() == 0
    rows = list(csv.DictReader(export.path_for(dunning.day(30)).open()))
    assert [(r["account_id"], r["amount_overdue"], r["currency"]) for r in rows] == [
        ("acc_1", "120.00", "EUR"),
        ("acc_2", "30.00", "EUR"),
    ]
    assert [s for _, k, s in dunning.reactions() if k == "COLLECTIONS"] == ["DONE"]


def test_an_event_committed_while_the_run_judges_the_account_is_kept_and_judged_again(
    dunning: Dunning, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.dunning.adapters.repositories import SqlAccounts

    dunning.invoice("inv_1")
    dunning.invoice("inv_2", "acc_2", customer_id="cus_2")
    original = SqlAccounts.save_many
    interfered: list[bool] = []

    def payment_fails_meanwhile(self: SqlAccounts, accounts: list[object]) -> None:
        if not interfered:
            interfered.append(True)
            # Another transaction (the projection consumer) changes acc_1 now.
            dunning.event(
                "PaymentFailed",
                account_id="acc_1",
                decline_code="expired_card",
                invoice_ids=["inv_1"],
            )
        original(self, accounts)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlAccounts, "save_many", payment_fails_meanwhile)
    run = dunning.run(7)
    assert (run.state, run.accounts_done) == ("COMPLETED", 2)
    for account_id in ("acc_1", "acc_2"):
        assert dunning.reactions(account_id) == [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")]
    with dunning.uow() as uow:
        account = uow.accounts.get("acc_1")
        invoice = uow.invoices.get("inv_1")
    assert account is not None
    assert invoice is not None
    assert account.last_failure_reason == "expired_card"  # the event's change survived
    assert account.level == 2
    assert invoice.failed_attempts == 1


def test_concurrent_starts_of_a_day_make_one_run(dunning: Dunning) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for n in range(1, 6):
        dunning.invoice(f"inv_{n}", f"acc_{n}", customer_id=f"cus_{n}")
    day = dunning.day(7)
    with ThreadPoolExecutor(4) as pool:
        finished = list(pool.map(lambda _: runs.run_inline(dunning.uow, day), range(4)))
    assert len({run.run_id for run in finished}) == 1
    with dunning.engine.connect() as connection:
        fees = connection.execute(
            select(func.count()).where(dunning_reactions.c.kind == "LATE_FEE")
        ).scalar_one()
    assert fees == 5
    assert len(dunning.events("DunningLevelReached")) == 5


class Refusing:
    """An accounts port whose answers a test chooses: down, or the state already there."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def _call(self, action: str, account_id: str) -> None:
        self.calls.append((action, account_id))
        raise self.error

    def suspend(self, account_id: str, reason: str, request_id: str) -> None:
        self._call("suspend", account_id)

    def bar(self, account_id: str, reason: str, request_id: str) -> None:
        self._call("bar", account_id)

    def restore(self, account_id: str, reason: str, request_id: str) -> None:
        self._call("restore", account_id)


def test_effects_wait_while_accounts_is_down_and_accept_a_state_already_there(
    dunning: Dunning,
) -> None:
    from services.common.errors import FailedPrecondition, Unavailable

    dunning.invoice("inv_1")
    dunning.run(14)
    down = Refusing(Unavailable("accounts is down"))
    assert Effects(dunning.uow, down, None, None).dispatch() == 0
    assert down.calls == [("suspend", "acc_1")]
    assert (3, "SUSPEND", "PENDING") in dunning.reactions()
    already = Refusing(
        FailedPrecondition("account is already SUSPENDED", reason="INVALID_STATE_TRANSITION")
    )
    assert Effects(dunning.uow, already, None, None).dispatch() == 1
    assert (3, "SUSPEND", "DONE") in dunning.reactions()
    assert Effects(dunning.uow, already, None, None).dispatch() == 0  # nothing left to do


def test_a_rerun_of_a_day_takes_in_accounts_overdue_that_day_it_had_not_seen(
    dunning: Dunning,
) -> None:
    dunning.invoice("inv_1")
    first = dunning.run(7)
    before = dunning.reactions("acc_1")
    # An invoice due the same day reaches dunning late (its event was delayed).
    dunning.invoice("inv_2", "acc_2", customer_id="cus_2")
    again = runs.run_inline(dunning.uow, dunning.day(7))
    assert again.run_id == first.run_id
    assert (again.state, again.accounts_total, again.accounts_done) == ("COMPLETED", 2, 2)
    assert dunning.reactions("acc_1") == before
    assert dunning.reactions("acc_2") == [(2, "LATE_FEE", "PENDING"), (2, "SMS", "DONE")]
