"""The unit of work the dunning handlers run in, the repositories it offers, and the ports
to other services the effects dispatcher calls.

Repositories are protocols; the SQL adapter implements them. Lists are keyset-paginated
on their id: ``after`` is the last id of the previous page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from services.common.clock import Clock
from services.common.money import Money
from services.common.unit_of_work import UnitOfWork
from services.dunning.domain.model import DunnedAccount, DunnedInvoice, PlannedReaction
from services.dunning.domain.policy import Policy


@dataclass(frozen=True)
class StoredPolicy:
    policy: Policy
    document: str
    create_time: datetime


@dataclass(frozen=True)
class Run:
    run_id: str
    run_date: date
    state: str  # RUNNING, COMPLETED
    accounts_total: int
    accounts_done: int
    accounts_escalated: int
    start_time: datetime
    end_time: datetime | None


@dataclass(frozen=True)
class ReactionRecord:
    """A planned reaction as stored; ``status`` PENDING means its effect is still owed."""

    key: str
    account_id: str
    customer_id: str
    episode_id: str
    level: int
    kind: str
    invoice_id: str
    template: str
    amount: Decimal | None
    currency: str
    description: str
    status: str
    attempts: int
    run_date: date


class AccountRepository(Protocol):
    def get(self, account_id: str) -> DunnedAccount | None: ...

    def add(self, account: DunnedAccount) -> None: ...

    def get_many(self, account_ids: Sequence[str]) -> Sequence[DunnedAccount]: ...

    def save_many(self, accounts: Sequence[DunnedAccount]) -> None:
        """Write these accounts' changes now, together (ABORTED if one changed meanwhile)."""
        ...

    def in_dunning(
        self,
        *,
        level: int = 0,
        state: str = "",
        policy_code: str = "",
        group_id: str = "",
        reseller_id: str = "",
        after: str = "",
        limit: int,
    ) -> Sequence[DunnedAccount]: ...


class InvoiceRepository(Protocol):
    def get(self, invoice_id: str) -> DunnedInvoice | None: ...

    def add(self, invoice: DunnedInvoice) -> None: ...

    def of_account(self, account_id: str) -> Sequence[DunnedInvoice]: ...

    def of_accounts(self, account_ids: Sequence[str]) -> dict[str, list[DunnedInvoice]]: ...

    def save_judged(self, invoices: Sequence[DunnedInvoice]) -> None:
        """Write what judging changed on these invoices now, together (or at commit)."""
        ...

    def of_customer(self, customer_id: str) -> Sequence[DunnedInvoice]: ...

    def customers(self, *, after: str, limit: int) -> Sequence[str]: ...


class PolicyRepository(Protocol):
    def latest(self, code: str) -> StoredPolicy | None: ...

    def add(self, stored: StoredPolicy) -> None: ...

    def all_latest(self) -> Sequence[StoredPolicy]: ...


class RunRepository(Protocol):
    def get(self, run_id: str) -> Run | None: ...

    def by_date(self, run_date: date) -> Run | None: ...

    def judged_at(self, run_id: str) -> tuple[date, datetime] | None:
        """The run's business date and the instant whose local date (in each account's
        zone) the run judges the account on; without counting its items, unlike ``get``."""
        ...

    def candidates(self, run_date: date, judged_at: datetime | None = None) -> Sequence[str]:
        """Accounts with an invoice overdue at ``judged_at`` in their zone, or a case open."""
        ...

    def add(self, run_id: str, run_date: date, judged_at: datetime, now: datetime) -> int:
        """The run and a PENDING item per candidate (set-based); how many items."""
        ...

    def pending(self, run_id: str) -> Sequence[str]: ...

    def add_missing(self, run_id: str, judged_at: datetime) -> int:
        """Add PENDING items for candidates not in the run yet (reopening it); how many."""
        ...

    def pending_among(self, run_id: str, account_ids: Sequence[str]) -> list[str]:
        """Those of ``account_ids`` whose work item is still PENDING, in the given order."""
        ...

    def finish_items(
        self, run_id: str, account_ids: Sequence[str], *, escalated: set[str]
    ) -> None: ...

    def complete_if_done(self, run_id: str, now: datetime) -> bool: ...


class ReactionRepository(Protocol):
    def preload(self, accounts: Sequence[DunnedAccount]) -> None:
        """Read these accounts' current episodes' reaction keys at once (``existing_keys``
        then asks no SQL)."""
        ...

    def existing_keys(self, keys: Sequence[str]) -> set[str]: ...

    def add(
        self,
        planned: PlannedReaction,
        account: DunnedAccount,
        *,
        description: str,
        status: str,
        run_date: date,
        now: datetime,
        kind: str | None = None,
    ) -> None:
        """Store a reaction under its key (``kind`` overrides the planned kind: RESTORE)."""
        ...

    def pending(self, limit: int) -> Sequence[ReactionRecord]: ...

    def finish(self, key: str, status: str, now: datetime, error: str = "") -> None: ...

    def failed_attempt(self, key: str, error: str) -> None: ...

    def handed_over(self, run_date: date) -> Sequence[ReactionRecord]: ...


class DunningUnitOfWork(UnitOfWork):
    accounts: AccountRepository
    invoices: InvoiceRepository
    policies: PolicyRepository
    runs: RunRepository
    reactions: ReactionRepository
    clock: Clock


class AccountsPort(Protocol):
    """The accounts service: what dunning does to an account's service."""

    def suspend(self, account_id: str, reason: str, request_id: str) -> None: ...

    def bar(self, account_id: str, reason: str, request_id: str) -> None: ...

    def restore(self, account_id: str, reason: str, request_id: str) -> None: ...


class InvoicingPort(Protocol):
    """The invoicing service: late fees and interest become pending items of the next invoice."""

    def add_pending_item(
        self,
        account_id: str,
        *,
        description: str,
        amount: Money,
        late_fee: bool,
        reference_invoice_id: str,
        request_id: str,
    ) -> None: ...

    def record_dunning_level(self, invoice_id: str, level: int, request_id: str) -> None: ...


class CollectionsExport(Protocol):
    """Where the accounts handed to collections on a day are written (a file per day)."""

    def write(self, run_date: date, handed_over: Sequence[ReactionRecord]) -> None: ...
