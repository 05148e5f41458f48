"""The pure dunning domain: levels reached, reactions planned once, interest, behaviour."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from services.common.money import Money
from services.dunning.domain.model import (
    CaseState,
    DunnedAccount,
    DunnedInvoice,
    Outcome,
    behaviour_of,
    level_reached,
    outcome_of,
    overdue_facts,
    penalty_interest,
    plan_reactions,
)
from services.dunning.domain.policy import ReactionKind
from services.dunning.service_layer.policy_document import read_policy

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "dunning-policy.yaml"
DUE = date(2027, 3, 1)


def _invoice(amount: str = "100.00", **changes: object) -> DunnedInvoice:
    invoice = DunnedInvoice(
        invoice_id="inv_1",
        account_id="acc_1",
        customer_id="cus_1",
        currency="EUR",
        status="OPEN",
        total=Decimal(amount),
        amount_due=Decimal(amount),
        due_date=DUE,
    )
    for name, value in changes.items():
        setattr(invoice, name, value)
    return invoice


def test_each_default_level_is_reached_on_its_day() -> None:
    policy = read_policy(SAMPLE.read_text())
    levels = {
        day: level_reached(policy, overdue_facts([_invoice()], DUE + timedelta(days=day)))
        for day in (0, 1, 6, 7, 13, 14, 29, 30, 90)
    }
    assert levels == {0: 0, 1: 1, 6: 1, 7: 2, 13: 2, 14: 3, 29: 3, 30: 4, 90: 4}


def test_disputed_money_is_not_overdue() -> None:
    today = DUE + timedelta(days=20)
    facts = overdue_facts([_invoice(disputed_amount=Decimal("100.00"))], today)
    assert not facts.anything_overdue
    assert facts.disputed_overdue == Decimal("100.00")
    partly = overdue_facts([_invoice(disputed_amount=Decimal("40.00"))], today)
    assert partly.amount_overdue == Money.of("60.00", "EUR")


def test_conditions_combine_with_and() -> None:
    policy = read_policy(
        """\
code: p
levels:
  - when: {days_past_due: 3, amount_overdue: {EUR: "50"}, unpaid_invoices: 2,
           last_failure_reason: [insufficient_funds]}
    reactions: [suspend]
"""
    )
    today = DUE + timedelta(days=5)
    two = [_invoice("30.00"), _invoice("30.00", invoice_id="inv_2")]
    assert level_reached(policy, overdue_facts(two, today, "insufficient_funds")) == 1
    assert level_reached(policy, overdue_facts(two, today, "expired_card")) == 0
    assert level_reached(policy, overdue_facts(two[:1], today, "insufficient_funds")) == 0
    assert (
        level_reached(policy, overdue_facts(two, DUE + timedelta(days=2), "insufficient_funds"))
        == 0
    )


def test_reactions_of_skipped_levels_are_planned_but_only_the_current_message() -> None:
    policy = read_policy(SAMPLE.read_text())
    account = DunnedAccount("acc_1", episode_id="ep1", state=CaseState.ACTIVE, level=3)
    planned = plan_reactions(policy, account, [_invoice()], DUE + timedelta(days=14))
    kinds = sorted((p.level, p.kind.value) for p in planned)
    assert kinds == [(2, "LATE_FEE"), (3, "EMAIL"), (3, "SUSPEND")]
    fee = next(p for p in planned if p.kind is ReactionKind.LATE_FEE)
    assert fee.amount == Money.of("10.00", "EUR")
    assert fee.invoice_id == "inv_1"
    again = plan_reactions(policy, account, [_invoice()], DUE + timedelta(days=15))
    assert {p.key for p in again} == {p.key for p in planned}  # same keys: applied once


def test_penalty_interest_over_a_leap_year_worked_by_hand() -> None:
    # 100,000.00 EUR at 8 % a year, overdue from 2027-12-20 to 2028-01-10:
    # 11 days of 2027 at 8000/365 a day + 10 days of 2028 at 8000/366 a day
    # = 241.0958904 + 218.5792350 = 459.6751254 -> 459.68 (one rounding, half-up).
    principal = Money.of("100000.00", "EUR")
    interest = penalty_interest(principal, Decimal(8), date(2027, 12, 20), date(2028, 1, 10))
    assert interest == Money.of("459.68", "EUR")
    # 28 Feb, 29 Feb and 1 Mar 2028: 3 x 8000/366 = 65.5737705 -> 65.57.
    assert penalty_interest(principal, Decimal(8), date(2028, 2, 27), date(2028, 3, 1)) == Money.of(
        "65.57", "EUR"
    )


def test_interest_is_planned_for_the_days_since_it_was_last_posted() -> None:
    policy = read_policy(
        """\
code: p
levels:
  - when: {days_past_due: 1}
    reactions: [{kind: penalty_interest, annual_rate_percent: "36.5"}]
"""
    )
    account = DunnedAccount("acc_1", episode_id="ep1", state=CaseState.ACTIVE, level=1)
    invoice = _invoice("1000.00", interest_through=DUE + timedelta(days=3))
    (posting,) = plan_reactions(policy, account, [invoice], DUE + timedelta(days=5))
    # 2 days of 1000.00 at 36.5 % / 365 = 0.10 % a day.
    assert posting.amount == Money.of("2.00", "EUR")
    assert (posting.period_after, posting.period_through) == (
        DUE + timedelta(days=3),
        DUE + timedelta(days=5),
    )


def test_payment_behaviour_after_a_year_of_mixed_payments() -> None:
    today = date(2027, 12, 31)
    invoices = []
    # Twelve monthly invoices of 50.00 due on the 15th: 8 paid on time, 2 paid 10 days
    # late after a failed attempt each and reaching level 2 with a 10.00 fee, 1 voided,
    # and December's still overdue (16 days, level 2, one failed attempt).
    for month in range(1, 13):
        due = date(2027, month, 15)
        inv = _invoice("50.00", invoice_id=f"inv_{month:02d}", due_date=due)
        if month <= 8:
            inv.status, inv.paid_on, inv.amount_due = "PAID", due, Decimal(0)
        elif month in (9, 10):
            inv.status, inv.paid_on, inv.amount_due = "PAID", due + timedelta(days=10), Decimal(0)
            inv.failed_attempts, inv.highest_level, inv.fees_charged = 1, 2, Decimal("10.00")
        elif month == 11:
            inv.status = "VOID"
        else:
            inv.failed_attempts, inv.highest_level = 1, 2
        invoices.append(inv)
    outcomes = [outcome_of(inv, today) for inv in invoices]
    assert [o.outcome for o in outcomes].count(Outcome.PAID_ON_TIME) == 8
    assert outcomes[11].outcome is Outcome.OVERDUE
    assert outcomes[11].days_late == 16
    record = behaviour_of(outcomes)
    # Cost: 2 x (5 + 3 + 10) + (8 + 3 + 10) = 57 over 11 judged invoices = 5.18 -> 94.8.
    assert (record.invoices, record.paid_on_time, record.paid_late, record.overdue) == (11, 8, 2, 1)
    assert record.failed_attempts == 3
    assert record.fees_charged == Decimal("20.00")
    assert record.average_days_late == Decimal("3.3")  # 36 days late / 11 invoices
    assert (record.score, record.grade) == (95, "A")


def test_a_levels_messages_repeat_every_n_days_while_the_account_stays() -> None:
    policy = read_policy(
        """\
code: p
levels:
  - when: {days_past_due: 1}
    repeat_every_days: 3
    reactions: [{kind: email, template: dunning_reminder}]
"""
    )
    since = DUE + timedelta(days=1)
    account = DunnedAccount(
        "acc_1", episode_id="ep1", state=CaseState.ACTIVE, level=1, level_since=since
    )
    keys = {
        day: {
            p.key
            for p in plan_reactions(policy, account, [_invoice()], since + timedelta(days=day))
        }
        for day in range(7)
    }
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] == keys[4] == keys[5] != keys[0]
    assert keys[6] not in (keys[0], keys[3])
