"""Days past due count in the account's time zone (ADR 0071), on the test clock.

Three accounts owe an invoice due on 1 March 2027: one in Pacific/Auckland (UTC+13 in
March), one in America/Los_Angeles (UTC-8) and one without a zone (UTC). The daily
scheduler runs on the test clock; each account reaches level 1 (day 1) on the run
that falls on its own 2 March, never on a date that has not begun where it lives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.dunning.entrypoints.scheduler import DailyScheduler
from tests.integration.dunning.conftest import DUE, Dunning

ZONES = {"acc_nz": "Pacific/Auckland", "acc_la": "America/Los_Angeles", "acc_utc": ""}


def _accounts(dunning: Dunning) -> None:
    for account_id, zone in ZONES.items():
        customer_id = account_id.replace("acc", "cus")
        dunning.event(
            "AccountCreated",
            account_id=account_id,
            customer_id=customer_id,
            reseller_id="",
            group_id="",
            currency_code="EUR",
            time_zone=zone,
            state="ACTIVE",
        )
        dunning.invoice(f"inv_{account_id}", account_id, customer_id=customer_id)


def _reached(dunning: Dunning) -> list[tuple[str, int, int]]:
    return sorted(
        (e["account_id"], e["level"], e["days_past_due"])
        for e in dunning.events("DunningLevelReached")
    )


def _at(dunning: Dunning, day: int, hour: int) -> None:
    dunning.clock.set(
        datetime.combine(DUE + timedelta(days=day), datetime.min.time(), UTC)
        + timedelta(hours=hour)
    )


def test_an_account_in_auckland_reaches_day_1_when_it_is_day_1_there(dunning: Dunning) -> None:
    _accounts(dunning)
    # Runs at 12:00 UTC: 01:00 the next day in Auckland, 04:00 the same day in Los Angeles.
    scheduler = DailyScheduler(dunning.uow, dunning.clock, run_hour=12, inline=True)
    _at(dunning, 0, 13)  # 1 March 13:00 UTC = 2 March 02:00 in Auckland
    assert scheduler.run_once() == 1
    assert _reached(dunning) == [("acc_nz", 1, 1)]  # the others are on their due date
    (message,) = dunning.events("DunningMessageDue")
    assert (message["account_id"], message["days_past_due"]) == ("acc_nz", 1)
    _at(dunning, 1, 13)  # 2 March everywhere else too
    assert scheduler.run_once() == 1
    assert _reached(dunning) == [("acc_la", 1, 1), ("acc_nz", 1, 1), ("acc_utc", 1, 1)]
    with dunning.uow() as uow:
        nz = uow.accounts.get("acc_nz")
    assert nz is not None
    assert (nz.time_zone, nz.started_on, nz.level_since) == (
        "Pacific/Auckland",
        DUE + timedelta(days=1),  # its own date when the run of 1 March judged it
        DUE + timedelta(days=1),
    )


def test_an_account_west_of_utc_is_not_dunned_before_its_day_begins(dunning: Dunning) -> None:
    _accounts(dunning)
    # Runs at 01:00 UTC: 14:00 in Auckland, 17:00 the day before in Los Angeles.
    scheduler = DailyScheduler(dunning.uow, dunning.clock, run_hour=1, inline=True)
    _at(dunning, 1, 2)  # 2 March 02:00 UTC = 1 March 18:00 in Los Angeles
    assert scheduler.run_once() == 1
    assert _reached(dunning) == [("acc_nz", 1, 1), ("acc_utc", 1, 1)]
    with dunning.uow() as uow:
        run = uow.runs.by_date(DUE + timedelta(days=1))
        assert run is not None
        assert run.accounts_total == 2  # Los Angeles is not overdue yet: not even a work item
    _at(dunning, 2, 2)
    assert scheduler.run_once() == 1
    assert ("acc_la", 1, 1) in _reached(dunning)
    # A day later everywhere: nobody is escalated twice, Auckland is not ahead by a level.
    assert len(_reached(dunning)) == 3


def test_a_payment_ends_dunning_by_the_accounts_own_date(dunning: Dunning) -> None:
    _accounts(dunning)
    scheduler = DailyScheduler(dunning.uow, dunning.clock, run_hour=12, inline=True)
    _at(dunning, 0, 13)
    scheduler.run_once()
    dunning.event(
        "InvoicePaid",
        invoice_id="inv_acc_nz",
        account_id="acc_nz",
        customer_id="cus_nz",
        currency="EUR",
        status="PAID",
        total={"amount": "100.00", "currency": "EUR"},
        amount_due={"amount": "0", "currency": "EUR"},
        disputed_amount={"amount": "0", "currency": "EUR"},
        due_date=DUE.isoformat(),
    )
    (ended,) = dunning.events("DunningEnded")
    assert (ended["account_id"], ended["reason"]) == ("acc_nz", "PAID")
    with dunning.uow() as uow:
        invoice = uow.invoices.get("inv_acc_nz")
    assert invoice is not None
    assert invoice.paid_on == DUE + timedelta(days=1)  # 2 March in Auckland
