"""An in-memory unit of work for the rating service layer: tests without a database."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from services.common.unit_of_work import RememberedRequest
from services.rating.service_layer.model import (
    CatalogRevision,
    ImportFile,
    KnownAccount,
    PlanAssignment,
    PrefixSet,
    Reject,
    RerateRun,
)
from services.rating.service_layer.unit_of_work import (
    RATED_COLUMNS,
    AccountRepository,
    CatalogRepository,
    CounterKey,
    CounterRepository,
    ImportRepository,
    RatedRow,
    RatedTuple,
    RatingUnitOfWork,
    RejectFilter,
    RejectRepository,
    RerateRepository,
    UsageFilter,
    UsageRepository,
)


class FakeStore:
    """What the fake 'database' holds; shared by every unit of work of a test."""

    def __init__(self) -> None:
        self.revisions: list[CatalogRevision] = []
        self.prefixes: dict[str, list[tuple[str, str]]] = {}
        self.accounts: dict[str, KnownAccount] = {}
        self.assignments: list[PlanAssignment] = []
        self.imports: dict[str, ImportFile] = {}
        self.rated: list[RatedRow] = []
        self.rejects: list[Reject] = []
        self.reruns: dict[str, RerateRun] = {}
        self.requests: dict[tuple[str, str], RememberedRequest] = {}
        self.processed: set[tuple[str, str]] = set()
        self.published: list[object] = []
        self.held: list[tuple[str, object]] = []  # (hold key, event) until released
        self.counters: dict[CounterKey, int] = {}
        self.aliases: dict[str, str] = {}
        self.commits = 0


class _Catalog(CatalogRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def current(self) -> CatalogRevision | None:
        return self.store.revisions[-1] if self.store.revisions else None

    def current_number(self) -> int | None:
        return self.store.revisions[-1].revision if self.store.revisions else None

    def get(self, revision: int) -> CatalogRevision | None:
        return next((r for r in self.store.revisions if r.revision == revision), None)

    def add(self, revision: CatalogRevision) -> int:
        revision.revision = len(self.store.revisions) + 1
        self.store.revisions.append(revision)
        return revision.revision

    def list(self, before: int | None, limit: int) -> list[CatalogRevision]:
        found = [
            r
            for r in reversed(self.store.revisions)
            if before is None or (r.revision or 0) < before
        ]
        return found[:limit]

    def add_prefix_set(self, prefix_set: PrefixSet, rows: Iterable[tuple[str, str]]) -> None:
        self.store.prefixes[prefix_set.set_id] = list(rows)

    def prefix_rows(self, set_id: str) -> Iterable[tuple[str, str]]:
        return list(self.store.prefixes.get(set_id, []))


class _Accounts(AccountRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def get(self, account_id: str) -> KnownAccount | None:
        return self.get_many([account_id]).get(account_id)

    def get_many(self, account_ids: Collection[str]) -> dict[str, KnownAccount]:
        found = {}
        for account_id in account_ids:
            account = self.store.accounts.get(account_id)
            if account is not None:
                account.assignments = [
                    a for a in self.store.assignments if a.account_id == account_id
                ]
                found[account_id] = account
        return found

    def add(self, account: KnownAccount) -> None:
        self.store.accounts[account.account_id] = account

    def set_alias(self, alias: str, account_id: str) -> None:
        self.store.aliases[alias] = account_id

    def by_aliases(self, aliases: Collection[str]) -> dict[str, str]:
        return {a: self.store.aliases[a] for a in aliases if a in self.store.aliases}

    def add_assignment(self, assignment: PlanAssignment) -> None:
        self.store.assignments.append(assignment)


class _Imports(ImportRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def get(self, file_id: str) -> ImportFile | None:
        return self.store.imports.get(file_id)

    def by_checksum(self, checksum: str) -> list[ImportFile]:
        return [f for f in self.store.imports.values() if f.checksum == checksum]

    def add(self, import_file: ImportFile) -> None:
        self.store.imports[import_file.file_id] = import_file

    def list(self, before: tuple[datetime, str] | None, limit: int) -> list[ImportFile]:
        return sorted(self.store.imports.values(), key=lambda f: f.started_at)[:limit]


class _Usage(UsageRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def existing_record_ids(self, record_ids: Collection[str]) -> set[str]:
        wanted = set(record_ids)
        return {r.record_id for r in self.store.rated if r.is_current and r.record_id in wanted}

    def add_rated(self, rows: Sequence[RatedTuple]) -> None:
        for row in rows:
            values = dict(zip(RATED_COLUMNS, row, strict=True))
            self.store.rated.append(RatedRow(id=len(self.store.rated) + 1, **values))

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
        return [
            r
            for r in self.store.rated
            if r.account_id == account_id
            and r.is_current
            and start <= r.event_time < end
            and r.id > after_id
            and (not not_from_rerate or r.rerate_id != not_from_rerate)
        ][:limit]

    def supersede(self, row_ids: Sequence[int]) -> None:
        ids = set(row_ids)
        self.store.rated = [
            replace(r, is_current=False) if r.id in ids else r for r in self.store.rated
        ]

    def list(
        self, query: UsageFilter, after: tuple[datetime, int] | None, limit: int
    ) -> list[RatedRow]:
        return [r for r in self.store.rated if r.is_current or query.include_history][:limit]


class _Rejects(RejectRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def add_many(self, rejects: Sequence[Reject]) -> None:
        for reject in rejects:
            reject.reject_id = len(self.store.rejects) + 1
            self.store.rejects.append(reject)

    def _match(self, query: RejectFilter) -> list[Reject]:
        return [
            r
            for r in self.store.rejects
            if (not query.file_id or r.file_id == query.file_id)
            and (not query.reason or r.reason == query.reason)
            and (not query.status or r.status == query.status)
            and (not query.reject_ids or r.reject_id in query.reject_ids)
        ]

    def list(self, query: RejectFilter, after_id: int | None, limit: int) -> list[Reject]:
        return [r for r in self._match(query) if after_id is None or (r.reject_id or 0) > after_id][
            :limit
        ]

    def counts(self, query: RejectFilter) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reject in self._match(query):
            counts[reject.reason] = counts.get(reject.reason, 0) + 1
        return counts

    def update(self, reject: Reject) -> None:
        pass  # objects are shared with the store


class _Reruns(RerateRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def add(self, run: RerateRun) -> None:
        self.store.reruns[run.rerate_id] = run

    def get(self, rerate_id: str) -> RerateRun | None:
        return self.store.reruns.get(rerate_id)


class _Counters(CounterRepository):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def read(self, cycles: Collection[tuple[str, str]]) -> dict[CounterKey, int]:
        wanted = set(cycles)
        return {k: v for k, v in self.store.counters.items() if (k[0], k[1]) in wanted}

    def increment(self, increments: dict[CounterKey, int]) -> None:
        for key, units in increments.items():
            self.store.counters[key] = self.store.counters.get(key, 0) + units

    def lock(self, account_ids: Collection[str]) -> None:
        """One thread at a time in the unit tests: nothing to wait for."""


class FakeUnitOfWork(RatingUnitOfWork):
    """Changes apply at once (no isolation); ``commit`` records the published events."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self.catalog = _Catalog(store)
        self.accounts = _Accounts(store)
        self.imports = _Imports(store)
        self.usage = _Usage(store)
        self.rejects = _Rejects(store)
        self.rerates = _Reruns(store)
        self.counters = _Counters(store)

    def _commit(self) -> None:
        self.store.held.extend(self.held_events)
        self.store.published.extend(self.pending_events)
        self.store.commits += 1

    def release_held(self, key: str) -> int:
        mine = [event for k, event in self.store.held if k == key]
        self.store.held = [(k, event) for k, event in self.store.held if k != key]
        self.store.published.extend(mine)
        return len(mine)

    def held_count(self, key: str) -> int:
        return sum(1 for k, _ in self.store.held if k == key)

    def rollback(self) -> None:
        pass

    def find_request(self, scope: str, request_id: str) -> RememberedRequest | None:
        return self.store.requests.get((scope, request_id))

    def remember_request(
        self, scope: str, request_id: str, fingerprint: str, resource_id: str
    ) -> None:
        if request_id:
            self.store.requests[(scope, request_id)] = RememberedRequest(fingerprint, resource_id)

    def mark_processed(self, consumer: str, event_id: str) -> bool:
        key = (consumer, event_id)
        if key in self.store.processed:
            return False
        self.store.processed.add(key)
        return True
