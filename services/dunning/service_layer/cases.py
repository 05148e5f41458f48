"""One account's dunning case: judged on a day, escalated, paused or ended.

``judge`` is what the daily run's work item does for one account; ``settle`` is what
every projection update does (an invoice paid, credited, voided or disputed; an
account closed): it ends or pauses the episode at once, event-driven, without
waiting for the next daily run. Both run inside the caller's unit of work, so the
case, its reactions (under their once-only keys) and its events commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Final

from services.common.events import DomainEvent
from services.common.ids import new_id
from services.common.money import Money
from services.dunning.domain import events
from services.dunning.domain.model import (
    CaseState,
    DunnedAccount,
    DunnedInvoice,
    OverdueFacts,
    PlannedReaction,
    level_reached,
    overdue_facts,
    plan_reactions,
)
from services.dunning.domain.policy import Policy, ReactionKind
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork, StoredPolicy

PENDING: Final = "PENDING"
DONE: Final = "DONE"
FAILED: Final = "FAILED"
RESTORE: Final = "RESTORE"
# Invoicing keeps each invoice's dunning level (INV-7: search by dunning state).
RECORD_LEVEL: Final = "RECORD_LEVEL"
# Reactions whose effect lives in another service (or a file): stored PENDING, done by
# the effects dispatcher. Messages are events committed with the case: done at once.
_REMOTE: Final = frozenset(
    {
        ReactionKind.LATE_FEE,
        ReactionKind.PENALTY_INTEREST,
        ReactionKind.SUSPEND,
        ReactionKind.BAR,
        ReactionKind.COLLECTIONS,
    }
)


def stored_policy_for(
    stored: Sequence[StoredPolicy], account: DunnedAccount
) -> StoredPolicy | None:
    """Of ``stored`` (the newest version of each policy): the policy of the account's
    group, else of its reseller, else the default one (it depends on nothing else, so a
    work message looks it up once per group and reseller)."""
    for match in (
        lambda p: account.group_id != "" and account.group_id in p.groups,
        lambda p: account.reseller_id != "" and account.reseller_id in p.resellers,
        lambda p: p.is_default,
    ):
        for item in stored:
            if match(item.policy):
                return item
    return None


def judge(
    uow: DunningUnitOfWork,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    today: date,
    policy: Policy | None,
) -> bool:
    """Move the account to its level on ``today`` and apply what is due; True if escalated."""
    settle(uow, account, invoices, today)
    if account.closed or account.is_exempt(today) or account.state == CaseState.PAUSED:
        return False
    facts = overdue_facts(invoices, today, account.last_failure_reason)
    if policy is None or not facts.anything_overdue:
        return False
    reached = level_reached(policy, facts)
    if not account.in_dunning:
        if reached == 0:
            return False
        account.episode_id = new_id("dep")
        account.state = CaseState.ACTIVE
        account.level = 0
        account.started_on = today
        account.ended_on = None
        account.end_reason = ""
        account.service_action = ""
    account.policy_code, account.policy_version = policy.code, policy.version
    escalated = reached > account.level
    if escalated:
        previous = account.level
        account.level = reached
        account.level_since = today
        overdue = [i for i in invoices if i.overdue_amount(today) > 0]
        for invoice in overdue:
            invoice.highest_level = max(invoice.highest_level, reached)
        level = policy.level(reached)
        assert level is not None
        _record_levels(uow, account, overdue, reached, today)
        uow.publish(
            events.DunningLevelReached(
                account_id=account.account_id,
                customer_id=account.customer_id,
                episode_id=account.episode_id,
                level=reached,
                level_name=level.name,
                previous_level=previous,
                amount_overdue=_amount(facts),
                days_past_due=facts.days_past_due,
                policy_code=policy.code,
                policy_version=policy.version,
            )
        )
    _apply(uow, policy, account, invoices, today, facts)
    return escalated


def _record_levels(
    uow: DunningUnitOfWork,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    level: int,
    today: date,
) -> None:
    """Tell invoicing each invoice's level (0: out of dunning), after commit, once per key."""
    planned = {
        f"{account.account_id}:{account.episode_id}:{level}:{RECORD_LEVEL}:{i.invoice_id}": i
        for i in invoices
    }
    known = uow.reactions.existing_keys(list(planned))
    for key, invoice in planned.items():
        if key in known:
            continue
        uow.reactions.add(
            PlannedReaction(key, ReactionKind.EMAIL, level, invoice_id=invoice.invoice_id),
            account,
            description=f"invoice {invoice.invoice_id} at dunning level {level}",
            status=PENDING,
            run_date=today,
            now=uow.clock.now(),
            kind=RECORD_LEVEL,
        )


def _amount(facts: OverdueFacts) -> Money:
    assert facts.amount_overdue is not None
    return facts.amount_overdue


def _apply(
    uow: DunningUnitOfWork,
    policy: Policy,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    today: date,
    facts: OverdueFacts,
) -> None:
    planned = plan_reactions(policy, account, invoices, today)
    if not planned:
        return
    done = uow.reactions.existing_keys([p.key for p in planned])
    by_id = {invoice.invoice_id: invoice for invoice in invoices}
    now = uow.clock.now()
    for reaction in planned:
        if reaction.key in done:
            continue
        level = policy.level(reaction.level)
        level_name = level.name if level is not None else ""
        description = _describe(reaction, level_name, by_id)
        status = PENDING if reaction.kind in _REMOTE else DONE
        uow.reactions.add(
            reaction, account, description=description, status=status, run_date=today, now=now
        )
        invoice = by_id.get(reaction.invoice_id)
        if reaction.kind in (ReactionKind.EMAIL, ReactionKind.SMS):
            uow.publish(_message(account, reaction, level_name, facts))
        elif reaction.kind in (ReactionKind.LATE_FEE, ReactionKind.PENALTY_INTEREST):
            assert invoice is not None
            assert reaction.amount is not None
            invoice.fees_charged += reaction.amount.amount
            if reaction.period_through is not None:
                invoice.interest_through = reaction.period_through
        elif reaction.kind is ReactionKind.SUSPEND:
            if account.service_action != "BARRED":
                account.service_action = "SUSPENDED"
        elif reaction.kind is ReactionKind.BAR:
            account.service_action = "BARRED"
        elif reaction.kind is ReactionKind.COLLECTIONS:
            uow.publish(
                events.AccountHandedToCollections(
                    account_id=account.account_id,
                    customer_id=account.customer_id,
                    episode_id=account.episode_id,
                    amount_overdue=_amount(facts),
                    days_past_due=facts.days_past_due,
                    invoice_ids=tuple(
                        i.invoice_id for i in invoices if i.overdue_amount(today) > 0
                    ),
                )
            )


def _describe(
    reaction: PlannedReaction, level_name: str, invoices: dict[str, DunnedInvoice]
) -> str:
    if reaction.kind is ReactionKind.LATE_FEE:
        return f"Late fee: invoice {reaction.invoice_id} overdue ({level_name})"[:500]
    if reaction.kind is ReactionKind.PENALTY_INTEREST:
        return (
            f"Penalty interest on invoice {reaction.invoice_id} "
            f"from {reaction.period_after} to {reaction.period_through}"
        )[:500]
    return f"{reaction.kind.value} at level {reaction.level} ({level_name})"[:500]


def _message(
    account: DunnedAccount, reaction: PlannedReaction, level_name: str, facts: OverdueFacts
) -> DomainEvent:
    return events.DunningMessageDue(
        account_id=account.account_id,
        customer_id=account.customer_id,
        episode_id=account.episode_id,
        level=reaction.level,
        level_name=level_name,
        channel=reaction.kind.value,
        template=reaction.template,
        amount_overdue=_amount(facts),
        days_past_due=facts.days_past_due,
        oldest_due_date=facts.oldest_due_date,
        message_key=reaction.key,
    )


def settle(
    uow: DunningUnitOfWork,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    today: date,
) -> None:
    """End or pause the episode when nothing (or only disputed money) is overdue any more."""
    if not account.in_dunning:
        return
    if account.closed:
        _end(uow, account, invoices, today, "ACCOUNT_CLOSED")
        return
    # Judged as of the case's own latest date when that is later than today (a run of a
    # coming date, asked on demand): an event must not end a case only because its
    # invoices are not overdue yet by the clock.
    as_of = max(today, account.level_since or today)
    facts = overdue_facts(invoices, as_of, account.last_failure_reason)
    if facts.anything_overdue:
        if account.state == CaseState.PAUSED:
            account.state = CaseState.ACTIVE
            uow.publish(
                events.DunningResumed(account.account_id, account.customer_id, account.episode_id)
            )
        return
    if facts.disputed_overdue > 0:
        if account.state != CaseState.PAUSED:
            account.state = CaseState.PAUSED
            uow.publish(
                events.DunningPaused(
                    account.account_id,
                    account.customer_id,
                    account.episode_id,
                    Money.of(facts.disputed_overdue, account.currency or invoices[0].currency),
                )
            )
        return
    _end(uow, account, invoices, today, "PAID")


def _end(
    uow: DunningUnitOfWork,
    account: DunnedAccount,
    invoices: Sequence[DunnedInvoice],
    today: date,
    reason: str,
) -> None:
    _record_levels(uow, account, [i for i in invoices if i.highest_level > 0], 0, today)
    if account.service_action and not account.closed:
        # Restored through accounts by the effects dispatcher, woken by this commit.
        restore = PlannedReaction(
            f"{account.account_id}:{account.episode_id}:0:{RESTORE}", ReactionKind.SUSPEND, 0
        )
        uow.reactions.add(
            restore,
            account,
            description=f"restore service: dunning ended ({reason})",
            status=PENDING,
            run_date=today,
            now=uow.clock.now(),
            kind=RESTORE,
        )
    uow.publish(
        events.DunningEnded(
            account_id=account.account_id,
            customer_id=account.customer_id,
            episode_id=account.episode_id,
            level=account.level,
            reason=reason,
            service_restored=bool(account.service_action) and not account.closed,
        )
    )
    account.state = CaseState.ENDED
    account.ended_on = today
    account.end_reason = reason
    account.level = 0
    account.service_action = ""
