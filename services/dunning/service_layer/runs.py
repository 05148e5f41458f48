"""The daily dunning run (DUN-2) on the bill runs' engine (ADR 0022 of invoicing, ADR 0049).

Starting a run writes, in one transaction, the run of the business date (unique: a
second start of the same date resumes the first, never repeats it), one
``dunning_run_items`` row per candidate account (PENDING) and the work messages
(batches of accounts) to the outbox, whose relay puts them on the Redis stream
``reckon:dunning:work``. Workers in any number of processes read that stream in one
consumer group. The accounts of a message are judged in one transaction that moves
their cases, stores their reactions under their once-only keys, writes their events
and marks their work items DONE (ADR 0050; one by one when a concurrent payment
conflicts): a worker killed at any point leaves all of it or none of it, its
unacknowledged message goes to another worker (or a resumed run queues the pending
items again), and a reaction's key makes a second application impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Final

from services.common.errors import Aborted, NotFound
from services.common.events import DomainEvent
from services.common.ids import new_id
from services.dunning.service_layer import cases
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork, Run, StoredPolicy

log = logging.getLogger(__name__)

UowFactory = Callable[[], DunningUnitOfWork]
WORK_STREAM: Final = "reckon:dunning:work"
# Accounts per work message, judged in one transaction (ADR 0070): the ~12 statements
# of a message are paid over a thousand accounts; a message still holds a bounded
# amount (its accounts, their invoices and reactions), so memory stays flat.
ACCOUNTS_PER_MESSAGE: Final = 1000
DEFAULT_RUN_HOUR: Final = 1
_ATTEMPTS: Final = 5


def judging_instant(run_date: date, run_hour: int = DEFAULT_RUN_HOUR) -> datetime:
    """The instant a date's run stands for: ``run_date`` at the run hour, UTC. Each
    account is judged on its own calendar date at that instant (ADR 0071)."""
    return datetime.combine(run_date, time(run_hour), UTC)


@dataclass(frozen=True)
class DunningRunWork(DomainEvent):
    """A work message: judge these accounts for the run."""

    event_type = "DunningRunWork"
    aggregate_field = "run_id"

    run_id: str
    account_ids: tuple[str, ...]


def _queue(uow: DunningUnitOfWork, run_id: str, account_ids: Sequence[str]) -> None:
    for start in range(0, len(account_ids), ACCOUNTS_PER_MESSAGE):
        uow.publish(
            DunningRunWork(run_id, tuple(account_ids[start : start + ACCOUNTS_PER_MESSAGE]))
        )


def start_run(
    uow_factory: UowFactory, run_date: date | None = None, *, run_hour: int = DEFAULT_RUN_HOUR
) -> Run:
    """The run of ``run_date`` (default: today on the clock), started or resumed."""
    for attempt in range(_ATTEMPTS):
        try:
            return _start(uow_factory, run_date, run_hour)
        except Aborted:
            # A concurrent start of the same date took the unique key: resume that one.
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _start(uow_factory: UowFactory, run_date: date | None, run_hour: int) -> Run:
    with uow_factory() as uow:
        now = uow.clock.now()
        when = run_date or now.date()
        existing = uow.runs.by_date(when)
        if existing is not None:
            stored = uow.runs.judged_at(existing.run_id)
            assert stored is not None
            # Accounts overdue on that date that the run has not seen yet (an invoice
            # learnt since) join it; those it judged are never judged twice.
            joining = uow.runs.add_missing(existing.run_id, stored[1])
            if existing.state == "RUNNING" or joining:
                pending = uow.runs.pending(existing.run_id)
                # Messages of a crashed worker may be lost with Redis: queue what is left.
                _queue(uow, existing.run_id, pending)
                if not pending:
                    uow.runs.complete_if_done(existing.run_id, now)
                uow.commit()
            run = uow.runs.get(existing.run_id)
            assert run is not None
            return run
        run_id = new_id("dru")
        total = uow.runs.add(run_id, when, judging_instant(when, run_hour), now)
        _queue(uow, run_id, uow.runs.pending(run_id) if total else [])
        if not total:
            uow.runs.complete_if_done(run_id, now)
        uow.commit()
        run = uow.runs.get(run_id)
        assert run is not None
        log.info("dunning run %s of %s: %d accounts", run_id, when, total)
        return run


def process(uow_factory: UowFactory, run_id: str, account_ids: Sequence[str]) -> None:
    """Do one work message in one transaction (ADR 0050, 0070); then maybe end the run."""
    with uow_factory() as uow:
        # Read once per message, not per account: policies change rarely, and a message
        # judged with the version read here is as if it had run a moment earlier.
        policies = list(uow.policies.all_latest())
        stored = uow.runs.judged_at(run_id)
    if stored is None:
        raise NotFound(f"no dunning run {run_id}", reason="RUN_NOT_FOUND")
    instant = stored[1]
    try:
        judge_many(uow_factory, run_id, instant, account_ids, policies)
    except Aborted:
        # A payment event changed one of the accounts meanwhile: judge them one by one.
        for account_id in account_ids:
            for attempt in range(_ATTEMPTS):
                try:
                    judge_many(uow_factory, run_id, instant, [account_id], policies)
                    break
                except Aborted:
                    if attempt == _ATTEMPTS - 1:
                        raise
    with uow_factory() as uow:
        if uow.runs.complete_if_done(run_id, uow.clock.now()):
            uow.commit()


def judge_many(
    uow_factory: UowFactory,
    run_id: str,
    judged_at: datetime,
    account_ids: Sequence[str],
    policies: Sequence[StoredPolicy],
) -> None:
    """Judge the still-pending accounts of a work message in one transaction (ADR 0050):
    all of them commit (cases, reactions, events, items DONE) or none does. Each account
    is judged on its own date at ``judged_at`` (its time zone, ADR 0071)."""
    with uow_factory() as uow:
        pending = uow.runs.pending_among(run_id, account_ids)
        if not pending:
            return  # done by an earlier delivery of this message
        accounts = {a.account_id: a for a in uow.accounts.get_many(pending)}
        invoices = uow.invoices.of_accounts(pending)
        uow.reactions.preload(list(accounts.values()))
        escalated = set()
        # Per message, not per account: the policy of each (group, reseller) and the
        # date of each zone at the run's instant.
        chosen: dict[tuple[str, str], StoredPolicy | None] = {}
        dates: dict[str, date] = {}
        for account_id in pending:
            account = accounts.get(account_id)
            if account is None:
                continue
            key = (account.group_id, account.reseller_id)
            if key not in chosen:
                chosen[key] = cases.stored_policy_for(policies, account)
            stored = chosen[key]
            today = dates.get(account.time_zone)
            if today is None:
                today = dates[account.time_zone] = account.local_date(judged_at)
            policy = stored.policy if stored is not None else None
            if cases.judge(uow, account, invoices.get(account_id, []), today, policy):
                escalated.add(account_id)
        uow.accounts.save_many(list(accounts.values()))
        uow.invoices.save_judged([i for found in invoices.values() for i in found])
        uow.runs.finish_items(run_id, pending, escalated=escalated)
        uow.commit()


def run_inline(
    uow_factory: UowFactory, run_date: date | None = None, *, run_hour: int = DEFAULT_RUN_HOUR
) -> Run:
    """Start (or resume) a run and do every pending item in this thread: the CLI/test path
    when no worker is reading the stream (the queued messages then find nothing to do)."""
    run = start_run(uow_factory, run_date, run_hour=run_hour)
    with uow_factory() as uow:
        pending = list(uow.runs.pending(run.run_id))
    for start in range(0, len(pending), ACCOUNTS_PER_MESSAGE):
        process(uow_factory, run.run_id, pending[start : start + ACCOUNTS_PER_MESSAGE])
    if not pending:
        with uow_factory() as uow:
            if uow.runs.complete_if_done(run.run_id, uow.clock.now()):
                uow.commit()
    with uow_factory() as uow:
        done = uow.runs.get(run.run_id)
    assert done is not None
    return done
