"""What dunning knows of accounts and invoices, and how one account is judged on one day.

Dunning keeps its own projection of invoices (``DunnedInvoice``, from invoicing's
events) and of accounts (``DunnedAccount``, from accounts' and payments' events). On
each business day the daily run computes an account's ``OverdueFacts``, the level
its policy gives them (``level_reached``), and plans the reactions of the levels it
has reached (``plan_reactions``). Every planned reaction has a key unique per
(account, episode, level, reaction[, invoice][, occurrence]): stored under a unique
constraint, a reaction planned twice (a rerun, a crash and retry) is applied once.

An *episode* is one stay in dunning: it starts when the account first reaches a
level and ends when nothing is overdue any more (paid, credited, voided) or the
account is closed. A dispute that leaves nothing but disputed money overdue pauses
the episode.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.money import Money, currency_exponent

from .policy import MESSAGE_KINDS, Conditions, Level, Policy, ReactionKind

# Invoice states in which money can still be owed.
OPEN_STATES: Final = frozenset({"OPEN", "PARTIALLY_PAID"})
ZERO: Final = Decimal(0)


@dataclass
class DunnedInvoice:
    """Dunning's copy of an invoice, plus what dunning did about it."""

    invoice_id: str
    account_id: str
    customer_id: str
    currency: str
    status: str
    total: Decimal
    amount_due: Decimal
    disputed_amount: Decimal = ZERO
    due_date: date | None = None
    issue_date: date | None = None
    paid_on: date | None = None
    failed_attempts: int = 0
    highest_level: int = 0
    fees_charged: Decimal = ZERO
    # Penalty interest has been posted for the days up to and including this one.
    interest_through: date | None = None

    def overdue_amount(self, today: date) -> Decimal:
        """What is owed past the due date and not disputed (0 when not overdue)."""
        if self.status not in OPEN_STATES or self.due_date is None or self.due_date >= today:
            return ZERO
        return max(ZERO, self.amount_due - self.disputed_amount)

    def disputed_overdue(self, today: date) -> Decimal:
        if self.status not in OPEN_STATES or self.due_date is None or self.due_date >= today:
            return ZERO
        return min(self.amount_due, self.disputed_amount)


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None  # an unknown zone counts as UTC rather than stopping the run


def local_date(instant: datetime, time_zone: str) -> date:
    """The calendar date at ``instant`` in ``time_zone`` (IANA name; "" or unknown: UTC).

    Days past due count in the account's zone: an account in Pacific/Auckland is on
    day 1 when it is day 1 there, whatever the date in UTC.
    """
    zone = _zone(time_zone)
    return instant.astimezone(zone or UTC).date()


class CaseState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"  # only disputed money is overdue
    ENDED = "ENDED"


@dataclass
class DunnedAccount:
    """Dunning's copy of an account and its current episode (if any)."""

    account_id: str
    customer_id: str = ""
    group_id: str = ""
    reseller_id: str = ""
    currency: str = ""
    # The account's IANA time zone (accounts' events): its days past due count there.
    time_zone: str = ""
    closed: bool = False
    last_failure_reason: str = ""
    exempt_until: date | None = None
    exempt_reason: str = ""
    # The current (or last) episode.
    episode_id: str = ""
    state: CaseState = CaseState.ENDED
    level: int = 0
    level_since: date | None = None
    started_on: date | None = None
    ended_on: date | None = None
    end_reason: str = ""
    policy_code: str = ""
    policy_version: int = 0
    # What dunning did to the account's service ("", "SUSPENDED", "BARRED"): restored on exit.
    service_action: str = ""
    version: int = field(default=0)

    def local_date(self, instant: datetime) -> date:
        return local_date(instant, self.time_zone)

    def is_exempt(self, today: date) -> bool:
        return self.exempt_until is not None and today <= self.exempt_until

    @property
    def in_dunning(self) -> bool:
        return self.state != CaseState.ENDED


@dataclass(frozen=True)
class OverdueFacts:
    days_past_due: int
    amount_overdue: Money | None
    unpaid_invoices: int
    disputed_overdue: Decimal
    last_failure_reason: str
    oldest_due_date: date | None

    @property
    def anything_overdue(self) -> bool:
        return self.amount_overdue is not None and self.amount_overdue.is_positive()


def overdue_facts(
    invoices: Iterable[DunnedInvoice], today: date, last_failure_reason: str = ""
) -> OverdueFacts:
    overdue = [inv for inv in invoices if inv.overdue_amount(today) > ZERO]
    disputed = sum((inv.disputed_overdue(today) for inv in invoices), ZERO)
    if not overdue:
        return OverdueFacts(0, None, 0, disputed, last_failure_reason, None)
    oldest = min(inv.due_date for inv in overdue if inv.due_date is not None)
    currency = overdue[0].currency
    amount = sum((inv.overdue_amount(today) for inv in overdue), ZERO)
    return OverdueFacts(
        days_past_due=(today - oldest).days,
        amount_overdue=_in_minor_units(amount, currency),
        unpaid_invoices=len(overdue),
        disputed_overdue=disputed,
        last_failure_reason=last_failure_reason,
        oldest_due_date=oldest,
    )


def _in_minor_units(amount: Decimal, currency: str) -> Money:
    """``amount`` rounded once, half-up, to the currency's minor unit (100 -> 100.00 EUR)."""
    places = Decimal(1).scaleb(-currency_exponent(currency))
    return Money(amount.quantize(places, rounding=ROUND_HALF_UP), currency)


def conditions_met(conditions: Conditions, facts: OverdueFacts) -> bool:
    if not facts.anything_overdue or facts.amount_overdue is None:
        return False
    if facts.days_past_due < conditions.days_past_due:
        return False
    if facts.unpaid_invoices < conditions.unpaid_invoices:
        return False
    if conditions.amount_overdue:
        minimum = conditions.amount_overdue.get(facts.amount_overdue.currency)
        if minimum is None or facts.amount_overdue.amount < minimum:
            return False
    return not (
        conditions.failure_reasons and facts.last_failure_reason not in conditions.failure_reasons
    )


def level_reached(policy: Policy, facts: OverdueFacts) -> int:
    """The highest level whose conditions all hold (0: none)."""
    reached = 0
    for level in policy.levels:
        if conditions_met(level.conditions, facts):
            reached = level.number
    return reached


def next_step(policy: Policy, level: int, facts: OverdueFacts) -> tuple[Level | None, date | None]:
    """The next level and the day its days-past-due condition is met (other conditions aside)."""
    following = policy.level(level + 1)
    if following is None or facts.oldest_due_date is None:
        return following, None
    return following, facts.oldest_due_date + timedelta(days=following.conditions.days_past_due)


def days_in_year(year: int) -> int:
    return 366 if calendar.isleap(year) else 365


def penalty_interest(
    principal: Money, annual_rate_percent: Decimal, after: date, through: date
) -> Money:
    """Daily interest on ``principal`` for each day after ``after`` up to ``through``.

    Each day earns ``principal * rate / 100 / days_in_year(that day's year)``: a day of
    a leap year earns 1/366 of the year's rate. The sum is rounded once, half-up, to
    the currency's minor unit.
    """
    total = ZERO
    day = after + timedelta(days=1)
    while day <= through:
        total += principal.amount * annual_rate_percent / Decimal(100) / days_in_year(day.year)
        day += timedelta(days=1)
    return _in_minor_units(total, principal.currency)


@dataclass(frozen=True)
class PlannedReaction:
    """A reaction due for an account; ``key`` is its once-only identity."""

    key: str
    kind: ReactionKind
    level: int
    invoice_id: str = ""
    template: str = ""
    amount: Money | None = None
    # PENALTY_INTEREST: the days it covers (after, through].
    period_after: date | None = None
    period_through: date | None = None


def plan_reactions(
    policy: Policy,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    today: date,
) -> list[PlannedReaction]:
    """Every reaction the account's current level (and the levels below it) calls for today.

    Non-message reactions of every level reached are planned (a late fee of level 2 is
    owed even if the first run found the account already at level 3); messages only
    for the current level, once per ``repeat_every_days`` period. Interest is planned
    for the days since it was last posted.
    """
    planned: list[PlannedReaction] = []
    episode = account.episode_id
    overdue = [inv for inv in invoices if inv.overdue_amount(today) > ZERO]
    for level in policy.levels[: account.level]:
        for reaction in level.reactions:
            base = f"{account.account_id}:{episode}:{level.number}:{reaction.kind.value}"
            if reaction.kind in MESSAGE_KINDS:
                if level.number != account.level:
                    continue
                occurrence = 0
                if level.repeat_every_days and account.level_since is not None:
                    occurrence = (today - account.level_since).days // level.repeat_every_days
                planned.append(
                    PlannedReaction(
                        f"{base}:{reaction.template}:{occurrence}",
                        reaction.kind,
                        level.number,
                        template=reaction.template,
                    )
                )
            elif reaction.kind is ReactionKind.LATE_FEE and reaction.late_fee is not None:
                for invoice in overdue:
                    owed = Money.of(invoice.overdue_amount(today), invoice.currency)
                    fee = reaction.late_fee.fee_for(owed)
                    if fee is not None and fee.is_positive():
                        planned.append(
                            PlannedReaction(
                                f"{base}:{invoice.invoice_id}",
                                reaction.kind,
                                level.number,
                                invoice_id=invoice.invoice_id,
                                amount=fee,
                            )
                        )
            elif reaction.kind is ReactionKind.PENALTY_INTEREST:
                rate = reaction.annual_rate_percent or ZERO
                for invoice in overdue:
                    assert invoice.due_date is not None
                    after = max(invoice.interest_through or invoice.due_date, invoice.due_date)
                    if after >= today:
                        continue
                    owed = Money.of(invoice.overdue_amount(today), invoice.currency)
                    interest = penalty_interest(owed, rate, after, today)
                    if interest.is_positive():
                        planned.append(
                            PlannedReaction(
                                f"{base}:{invoice.invoice_id}:{today.isoformat()}",
                                reaction.kind,
                                level.number,
                                invoice_id=invoice.invoice_id,
                                amount=interest,
                                period_after=after,
                                period_through=today,
                            )
                        )
            elif reaction.kind is ReactionKind.COLLECTIONS and overdue:
                # Handed over with the amount owed that day (the export file's figure).
                owed_total = sum((inv.overdue_amount(today) for inv in overdue), ZERO)
                planned.append(
                    PlannedReaction(
                        base,
                        reaction.kind,
                        level.number,
                        amount=Money.of(owed_total, overdue[0].currency),
                    )
                )
            else:
                planned.append(PlannedReaction(base, reaction.kind, level.number))
    return planned


class Outcome(StrEnum):
    PAID_ON_TIME = "PAID_ON_TIME"
    PAID_LATE = "PAID_LATE"
    OPEN = "OPEN"  # not yet due
    OVERDUE = "OVERDUE"
    CANCELLED = "CANCELLED"  # voided or credited to nothing


@dataclass(frozen=True)
class InvoiceOutcome:
    invoice_id: str
    account_id: str
    customer_id: str
    currency: str
    total: Decimal
    due_date: date | None
    paid_on: date | None
    outcome: Outcome
    days_late: int
    failed_attempts: int
    highest_level: int
    fees_charged: Decimal


def outcome_of(invoice: DunnedInvoice, today: date) -> InvoiceOutcome:
    days_late = 0
    if invoice.status == "PAID":
        due = invoice.due_date
        paid = invoice.paid_on or today
        days_late = max(0, (paid - due).days) if due is not None else 0
        outcome = Outcome.PAID_LATE if days_late > 0 else Outcome.PAID_ON_TIME
    elif invoice.status in OPEN_STATES:
        if invoice.due_date is not None and invoice.due_date < today:
            outcome = Outcome.OVERDUE
            days_late = (today - invoice.due_date).days
        else:
            outcome = Outcome.OPEN
    else:
        outcome = Outcome.CANCELLED
    return InvoiceOutcome(
        invoice.invoice_id,
        invoice.account_id,
        invoice.customer_id,
        invoice.currency,
        invoice.total,
        invoice.due_date,
        invoice.paid_on if invoice.status == "PAID" else None,
        outcome,
        days_late,
        invoice.failed_attempts,
        invoice.highest_level,
        invoice.fees_charged,
    )


@dataclass(frozen=True)
class Behaviour:
    """A customer's payment behaviour: counts and the score/class derived from them.

    Each judged invoice (paid or overdue; not cancelled, not yet due) costs points:
    half a point per day late (at most 50), 3 per failed collection attempt and 5 per
    dunning level reached. The score is 100 minus the average cost (never below 0);
    class A from 90, B from 75, C from 50, D below.
    """

    invoices: int
    paid_on_time: int
    paid_late: int
    overdue: int
    average_days_late: Decimal
    failed_attempts: int
    highest_level: int
    fees_charged: Decimal
    score: int
    grade: str


def behaviour_of(outcomes: Sequence[InvoiceOutcome]) -> Behaviour:
    judged = [o for o in outcomes if o.outcome not in (Outcome.CANCELLED, Outcome.OPEN)]
    cost = ZERO
    for o in judged:
        cost += min(Decimal(o.days_late) / 2, Decimal(50))
        cost += 3 * o.failed_attempts + 5 * o.highest_level
    average_cost = cost / len(judged) if judged else ZERO
    score = max(0, int((Decimal(100) - average_cost).to_integral_value(rounding="ROUND_HALF_UP")))
    late_days = [o.days_late for o in judged if o.days_late > 0]
    return Behaviour(
        invoices=len(judged),
        paid_on_time=sum(1 for o in judged if o.outcome is Outcome.PAID_ON_TIME),
        paid_late=sum(1 for o in judged if o.outcome is Outcome.PAID_LATE),
        overdue=sum(1 for o in judged if o.outcome is Outcome.OVERDUE),
        average_days_late=(
            (Decimal(sum(late_days)) / len(judged)).quantize(Decimal("0.1")) if judged else ZERO
        ),
        failed_attempts=sum(o.failed_attempts for o in outcomes),
        highest_level=max((o.highest_level for o in outcomes), default=0),
        fees_charged=sum((o.fees_charged for o in outcomes), ZERO),
        score=score,
        grade="A" if score >= 90 else "B" if score >= 75 else "C" if score >= 50 else "D",
    )
