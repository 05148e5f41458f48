"""The rating unit of work and the repositories handlers see (no SQL here).

Rated usage is written as tuples in ``RATED_COLUMNS`` order rather than as
objects: an import stores tens of thousands of rows a second and the SQL
adapter streams them straight into ``COPY`` (PostgreSQL) or ``executemany``
(SQLite).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Self

from services.common.events import DomainEvent
from services.common.unit_of_work import UnitOfWork
from services.rating.service_layer.model import (
    CatalogRevision,
    ImportFile,
    KnownAccount,
    PlanAssignment,
    PrefixSet,
    Reject,
    RerateRun,
)

RATED_COLUMNS: Final = (
    "record_id",
    "account_id",
    "service",
    "destination",
    "event_time",
    "quantity",
    "unit",
    "currency",
    "allowance_units",
    "charged_units",
    "amount_nanos",
    "net_nanos",
    "tax_nanos",
    "plan_code",
    "plan_version",
    "catalog_revision",
    "file_id",
    "line",
    "breakdown",
    "rated_at",
    "is_current",
    "rerate_id",
)
RatedTuple = tuple[Any, ...]
# (account id, bill cycle start as ISO date, counter name)
CounterKey = tuple[str, str, str]


@dataclass(slots=True)
class RatedRow:
    """One stored rating of a record."""

    id: int
    record_id: str
    account_id: str
    service: str
    destination: str
    event_time: datetime
    quantity: int
    unit: str
    currency: str
    allowance_units: int
    charged_units: int
    amount_nanos: int
    net_nanos: int
    tax_nanos: int
    plan_code: str
    plan_version: int
    catalog_revision: int
    file_id: str | None
    line: int | None
    breakdown: str
    rated_at: datetime
    is_current: bool
    rerate_id: str | None


@dataclass(frozen=True)
class UsageFilter:
    account_id: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None
    file_id: str = ""
    include_history: bool = False
    # Ratings of a held (failed, not released) file are not usage yet (ADR 0042).
    include_held: bool = False
    service: str = ""


@dataclass(frozen=True)
class RejectFilter:
    file_id: str = ""
    reason: str = ""
    status: str = ""
    reject_ids: tuple[int, ...] = ()


class CatalogRepository(abc.ABC):
    @abc.abstractmethod
    def current(self) -> CatalogRevision | None: ...

    @abc.abstractmethod
    def current_number(self) -> int | None: ...

    @abc.abstractmethod
    def get(self, revision: int) -> CatalogRevision | None: ...

    @abc.abstractmethod
    def add(self, revision: CatalogRevision) -> int:
        """Store a new revision; returns its number."""

    @abc.abstractmethod
    def list(self, before: int | None, limit: int) -> list[CatalogRevision]: ...

    @abc.abstractmethod
    def add_prefix_set(self, prefix_set: PrefixSet, rows: Iterable[tuple[str, str]]) -> None: ...

    @abc.abstractmethod
    def prefix_rows(self, set_id: str) -> Iterable[tuple[str, str]]: ...


class AccountRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, account_id: str) -> KnownAccount | None: ...

    @abc.abstractmethod
    def get_many(self, account_ids: Collection[str]) -> dict[str, KnownAccount]: ...

    @abc.abstractmethod
    def add(self, account: KnownAccount) -> None: ...

    @abc.abstractmethod
    def add_assignment(self, assignment: PlanAssignment) -> None: ...

    @abc.abstractmethod
    def set_alias(self, alias: str, account_id: str) -> None:
        """``alias`` (``ext:<ref>``, ``msisdn:+31...``) names ``account_id`` from now on."""

    @abc.abstractmethod
    def by_aliases(self, aliases: Collection[str]) -> dict[str, str]:
        """Account ids of those of ``aliases`` that name one."""


class ImportRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, file_id: str) -> ImportFile | None: ...

    @abc.abstractmethod
    def by_checksum(self, checksum: str) -> list[ImportFile]: ...

    @abc.abstractmethod
    def add(self, import_file: ImportFile) -> None: ...

    @abc.abstractmethod
    def list(self, before: tuple[datetime, str] | None, limit: int) -> list[ImportFile]: ...


class UsageRepository(abc.ABC):
    @abc.abstractmethod
    def existing_record_ids(self, record_ids: Collection[str]) -> set[str]:
        """The ids among ``record_ids`` that already have a current rating."""

    @abc.abstractmethod
    def add_rated(self, rows: Sequence[RatedTuple]) -> None: ...

    @abc.abstractmethod
    def current_in_period(
        self,
        account_id: str,
        start: datetime,
        end: datetime,
        after_id: int,
        limit: int,
        *,
        not_from_rerate: str = "",
    ) -> list[RatedRow]:
        """Current ratings of the account in [start, end), by id, except those a
        re-rating run (``not_from_rerate``) produced itself."""

    @abc.abstractmethod
    def supersede(self, row_ids: Sequence[int]) -> None:
        """Mark these ratings as history (a newer rating replaces them)."""

    @abc.abstractmethod
    def list(
        self, query: UsageFilter, after: tuple[datetime, int] | None, limit: int
    ) -> list[RatedRow]: ...


class RejectRepository(abc.ABC):
    @abc.abstractmethod
    def add_many(self, rejects: Sequence[Reject]) -> None: ...

    @abc.abstractmethod
    def list(self, query: RejectFilter, after_id: int | None, limit: int) -> list[Reject]: ...

    @abc.abstractmethod
    def counts(self, query: RejectFilter) -> dict[str, int]: ...

    @abc.abstractmethod
    def update(self, reject: Reject) -> None: ...


class RerateRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, run: RerateRun) -> None: ...

    @abc.abstractmethod
    def get(self, rerate_id: str) -> RerateRun | None: ...


class CounterRepository(abc.ABC):
    @abc.abstractmethod
    def read(self, cycles: Collection[tuple[str, str]]) -> dict[CounterKey, int]:
        """Counters of these (account id, cycle start) pairs."""

    @abc.abstractmethod
    def increment(self, increments: dict[CounterKey, int]) -> None:
        """Add to counters (created at zero when new); never overwrites."""

    @abc.abstractmethod
    def lock(self, account_ids: Collection[str]) -> None:
        """Hold the counters of these accounts until this unit ends.

        Called first in a unit that reads counters and stores draws from them: a
        concurrent unit locking one of the accounts waits until this one committed,
        then reads what it drew. ``Aborted`` if the database gave up (deadlock).
        """


class RatingUnitOfWork(UnitOfWork):
    catalog: CatalogRepository
    accounts: AccountRepository
    imports: ImportRepository
    usage: UsageRepository
    rejects: RejectRepository
    rerates: RerateRepository
    counters: CounterRepository

    def __init__(self) -> None:
        super().__init__()
        self.held_events: list[tuple[str, DomainEvent]] = []

    def __enter__(self) -> Self:
        self.held_events = []
        return super().__enter__()

    def hold(self, key: str, event: DomainEvent) -> None:
        """Store ``event`` with this unit's commit but publish it only when ``key`` (an
        import file id) is released: an import's events wait until the file ends well,
        so a failed file charges nothing (ADR 0042)."""
        self.held_events.append((key, event))

    def commit(self) -> None:
        super().commit()
        self.held_events = []

    @abc.abstractmethod
    def release_held(self, key: str) -> int:
        """Publish (with this unit's commit) every event held under ``key``, in the order
        they were held; returns how many."""

    @abc.abstractmethod
    def held_count(self, key: str) -> int:
        """How many events are held under ``key``."""
