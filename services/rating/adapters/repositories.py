"""SQL repositories of the rating service (SQLite and PostgreSQL).

The bulk paths are written for throughput: rated usage goes to PostgreSQL with
``COPY ... FROM STDIN`` on the session's own connection (so it commits with the
rest of the unit of work) and to SQLite with one ``executemany``; destination
prefixes likewise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from sqlalchemy import and_, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from services.common.errors import Aborted
from services.rating.adapters.orm import (
    account_aliases,
    catalog_revisions,
    destination_prefixes,
    import_files,
    known_accounts,
    plan_assignments,
    rated_usage,
    rejects,
    usage_counters,
)
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
    RejectFilter,
    RejectRepository,
    RerateRepository,
    UsageFilter,
    UsageRepository,
)

# IN lists are cut in chunks well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 2000
# The counter row per account that units drawing from its counters lock first.
LOCK_COUNTER: Final = "lock"


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC), for raw executemany."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _copy_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    types: Sequence[str] | None = None,
) -> None:
    """Stream rows into ``table`` with COPY on the session's connection (PostgreSQL).

    With ``types`` the copy is binary: values are sent in their wire form, which
    costs the client a fraction of formatting them as text.
    """
    driver = session.connection().connection.driver_connection
    assert driver is not None
    binary = " (FORMAT BINARY)" if types is not None else ""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN{binary}"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        if types is not None:
            copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


# PostgreSQL types of RATED_COLUMNS, for binary COPY (varchar travels as text).
_RATED_TYPES: Final = {
    "event_time": "timestamptz",
    "rated_at": "timestamptz",
    "quantity": "int8",
    "allowance_units": "int8",
    "charged_units": "int8",
    "amount_nanos": "int8",
    "net_nanos": "int8",
    "tax_nanos": "int8",
    "line": "int8",
    "plan_version": "int4",
    "catalog_revision": "int4",
    "is_current": "bool",
}
RATED_COPY_TYPES: Final = tuple(_RATED_TYPES.get(column, "text") for column in RATED_COLUMNS)


class SqlCatalogRepository(CatalogRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self) -> CatalogRevision | None:
        return self.session.scalars(
            select(CatalogRevision).order_by(catalog_revisions.c.revision.desc()).limit(1)
        ).first()

    def current_number(self) -> int | None:
        value = self.session.scalar(select(func.max(catalog_revisions.c.revision)))
        return int(value) if value is not None else None

    def get(self, revision: int) -> CatalogRevision | None:
        return self.session.get(CatalogRevision, revision)

    def add(self, revision: CatalogRevision) -> int:
        self.session.add(revision)
        self.session.flush()
        assert revision.revision is not None
        return revision.revision

    def list(self, before: int | None, limit: int) -> list[CatalogRevision]:
        query = select(CatalogRevision).order_by(catalog_revisions.c.revision.desc()).limit(limit)
        if before is not None:
            query = query.where(catalog_revisions.c.revision < before)
        return list(self.session.scalars(query))

    def add_prefix_set(self, prefix_set: PrefixSet, rows: Iterable[tuple[str, str]]) -> None:
        self.session.add(prefix_set)
        self.session.flush()
        set_id = prefix_set.set_id
        if _is_postgres(self.session):
            _copy_rows(
                self.session,
                "destination_prefixes",
                ("set_id", "prefix", "destination"),
                ((set_id, prefix, name) for prefix, name in rows),
            )
            return
        connection = self.session.connection()
        batch: list[tuple[str, str, str]] = []
        for prefix, name in rows:
            batch.append((set_id, prefix, name))
            if len(batch) >= 10_000:
                connection.exec_driver_sql(
                    "INSERT INTO destination_prefixes (set_id, prefix, destination) "
                    "VALUES (?, ?, ?)",
                    batch,
                )  # type: ignore[arg-type]
                batch = []
        if batch:
            connection.exec_driver_sql(
                "INSERT INTO destination_prefixes (set_id, prefix, destination) VALUES (?, ?, ?)",
                batch,
            )  # type: ignore[arg-type]

    def prefix_rows(self, set_id: str) -> Iterator[tuple[str, str]]:
        result = self.session.execute(
            select(destination_prefixes.c.prefix, destination_prefixes.c.destination).where(
                destination_prefixes.c.set_id == set_id
            )
        )
        for prefix, destination in result:
            yield str(prefix), str(destination)


class SqlAccountRepository(AccountRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def _with_assignments(self, accounts: list[KnownAccount]) -> dict[str, KnownAccount]:
        found = {account.account_id: account for account in accounts}
        for account in accounts:
            account.assignments = []
        ids = list(found)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            assignments = self.session.scalars(
                select(PlanAssignment)
                .where(plan_assignments.c.account_id.in_(chunk))
                .order_by(plan_assignments.c.effective_from, plan_assignments.c.id)
            )
            for assignment in assignments:
                found[assignment.account_id].assignments.append(assignment)
        return found

    def get(self, account_id: str) -> KnownAccount | None:
        account = self.session.get(KnownAccount, account_id)
        if account is None:
            return None
        return self._with_assignments([account])[account_id]

    def get_many(self, account_ids: Collection[str]) -> dict[str, KnownAccount]:
        ids = list(account_ids)
        accounts: list[KnownAccount] = []
        for start in range(0, len(ids), _CHUNK):
            accounts.extend(
                self.session.scalars(
                    select(KnownAccount).where(
                        known_accounts.c.account_id.in_(ids[start : start + _CHUNK])
                    )
                )
            )
        return self._with_assignments(accounts)

    def add(self, account: KnownAccount) -> None:
        self.session.add(account)

    def set_alias(self, alias: str, account_id: str) -> None:
        existing = self.session.execute(
            select(account_aliases.c.account_id).where(account_aliases.c.alias == alias)
        ).scalar_one_or_none()
        if existing is None:
            self.session.execute(insert(account_aliases).values(alias=alias, account_id=account_id))
        elif existing != account_id:  # a number moved to another account
            self.session.execute(
                update(account_aliases)
                .where(account_aliases.c.alias == alias)
                .values(account_id=account_id)
            )

    def by_aliases(self, aliases: Collection[str]) -> dict[str, str]:
        wanted = list(aliases)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            rows = self.session.execute(
                select(account_aliases.c.alias, account_aliases.c.account_id).where(
                    account_aliases.c.alias.in_(wanted[start : start + _CHUNK])
                )
            )
            found.update({alias: account_id for alias, account_id in rows})
        return found

    def add_assignment(self, assignment: PlanAssignment) -> None:
        self.session.add(assignment)


class SqlImportRepository(ImportRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, file_id: str) -> ImportFile | None:
        return self.session.get(ImportFile, file_id)

    def by_checksum(self, checksum: str) -> list[ImportFile]:
        return list(
            self.session.scalars(
                select(ImportFile)
                .where(import_files.c.checksum == checksum)
                .order_by(import_files.c.started_at)
            )
        )

    def add(self, import_file: ImportFile) -> None:
        self.session.add(import_file)

    def list(self, before: tuple[datetime, str] | None, limit: int) -> list[ImportFile]:
        started = import_files.c.started_at
        file_id = import_files.c.file_id
        query = select(ImportFile).order_by(started.desc(), file_id.desc()).limit(limit)
        if before is not None:
            query = query.where(
                or_(started < before[0], and_(started == before[0], file_id < before[1]))
            )
        return list(self.session.scalars(query))


def _not_held() -> Any:
    """Rows not of a held (failed, unreleased) import file (ADR 0042)."""
    held = select(import_files.c.file_id).where(import_files.c.held)
    return or_(rated_usage.c.file_id.is_(None), rated_usage.c.file_id.not_in(held))


def _rated_row(row: Any) -> RatedRow:
    return RatedRow(
        row.id,
        row.record_id,
        row.account_id,
        row.service,
        row.destination,
        row.event_time,
        row.quantity,
        row.unit,
        row.currency,
        row.allowance_units,
        row.charged_units,
        row.amount_nanos,
        row.net_nanos,
        row.tax_nanos,
        row.plan_code,
        row.plan_version,
        row.catalog_revision,
        row.file_id,
        row.line,
        row.breakdown,
        row.rated_at,
        bool(row.is_current),
        row.rerate_id,
    )


class SqlUsageRepository(UsageRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def existing_record_ids(self, record_ids: Collection[str]) -> set[str]:
        ids = list(record_ids)
        if not ids:
            return set()
        if _is_postgres(self.session):
            # One array parameter instead of thousands of bound values: far cheaper to
            # send and plan, and it still uses the partial unique index.
            result = self.session.connection().exec_driver_sql(
                "SELECT record_id FROM rated_usage WHERE is_current AND record_id = ANY(%s)",
                (ids,),
            )
            return {row[0] for row in result}
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            found.update(
                self.session.scalars(
                    select(rated_usage.c.record_id).where(
                        rated_usage.c.is_current,
                        rated_usage.c.record_id.in_(ids[start : start + _CHUNK]),
                    )
                )
            )
        return found

    def add_rated(self, rows: Sequence[RatedTuple]) -> None:
        if not rows:
            return
        try:
            self._add_rated(rows)
        except (IntegrityError, psycopg.errors.IntegrityError) as exc:
            # A record id a concurrent import stored first (the partial unique index).
            raise Aborted("a concurrent import rated one of these records; retry") from exc
        except (OperationalError, psycopg.errors.DeadlockDetected) as exc:
            if not isinstance(getattr(exc, "orig", exc), psycopg.errors.DeadlockDetected):
                raise
            # Two imports each waiting for a record id the other holds (each also holding
            # its accounts' counter locks); the database broke the tie by failing this one.
            raise Aborted("a concurrent import held these records; retry") from exc

    def _add_rated(self, rows: Sequence[RatedTuple]) -> None:
        if _is_postgres(self.session):
            _copy_rows(self.session, "rated_usage", RATED_COLUMNS, rows, RATED_COPY_TYPES)
            return
        event_time = RATED_COLUMNS.index("event_time")
        rated_at = RATED_COLUMNS.index("rated_at")
        current = RATED_COLUMNS.index("is_current")
        prepared = []
        for row in rows:
            values = list(row)
            values[event_time] = _sqlite_time(values[event_time])
            values[rated_at] = _sqlite_time(values[rated_at])
            values[current] = 1 if values[current] else 0
            prepared.append(tuple(values))
        placeholders = ", ".join("?" for _ in RATED_COLUMNS)
        self.session.connection().exec_driver_sql(
            f"INSERT INTO rated_usage ({', '.join(RATED_COLUMNS)}) VALUES ({placeholders})",
            prepared,  # type: ignore[arg-type]
        )

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
        query = (
            select(rated_usage)
            .where(
                rated_usage.c.account_id == account_id,
                rated_usage.c.is_current,
                rated_usage.c.event_time >= start,
                rated_usage.c.event_time < end,
                rated_usage.c.id > after_id,
            )
            .order_by(rated_usage.c.id)
            .limit(limit)
        )
        query = query.where(_not_held())  # a held file's ratings are not usage yet
        if not_from_rerate:
            query = query.where(
                or_(
                    rated_usage.c.rerate_id.is_(None),
                    rated_usage.c.rerate_id != not_from_rerate,
                )
            )
        return [_rated_row(row) for row in self.session.execute(query)]

    def supersede(self, row_ids: Sequence[int]) -> None:
        ids = list(row_ids)
        for start in range(0, len(ids), _CHUNK):
            self.session.execute(
                update(rated_usage)
                .where(rated_usage.c.id.in_(ids[start : start + _CHUNK]))
                .values(is_current=False)
            )

    def list(
        self, query: UsageFilter, after: tuple[datetime, int] | None, limit: int
    ) -> list[RatedRow]:
        statement = select(rated_usage).order_by(rated_usage.c.event_time, rated_usage.c.id)
        if not query.include_history:
            statement = statement.where(rated_usage.c.is_current)
        if not query.include_held:
            statement = statement.where(_not_held())
        if query.account_id:
            statement = statement.where(rated_usage.c.account_id == query.account_id)
        if query.file_id:
            statement = statement.where(rated_usage.c.file_id == query.file_id)
        if query.service:
            statement = statement.where(rated_usage.c.service == query.service)
        if query.period_start is not None:
            statement = statement.where(rated_usage.c.event_time >= query.period_start)
        if query.period_end is not None:
            statement = statement.where(rated_usage.c.event_time < query.period_end)
        if after is not None:
            statement = statement.where(
                or_(
                    rated_usage.c.event_time > after[0],
                    and_(rated_usage.c.event_time == after[0], rated_usage.c.id > after[1]),
                )
            )
        return [_rated_row(row) for row in self.session.execute(statement.limit(limit))]


class SqlRejectRepository(RejectRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, items: Sequence[Reject]) -> None:
        if not items:
            return
        self.session.execute(
            insert(rejects),
            [
                {
                    "file_id": r.file_id,
                    "line": r.line,
                    "record_id": r.record_id,
                    "account_id": r.account_id,
                    "reason": r.reason,
                    "message": r.message,
                    "raw_record": r.raw_record,
                    "status": str(r.status),
                    "attempts": r.attempts,
                    "created_at": r.created_at,
                    "resolved_at": r.resolved_at,
                }
                for r in items
            ],
        )

    def _filtered(self, statement: Any, query: RejectFilter) -> Any:
        if query.file_id:
            statement = statement.where(rejects.c.file_id == query.file_id)
        if query.reason:
            statement = statement.where(rejects.c.reason == query.reason)
        if query.status:
            statement = statement.where(rejects.c.status == query.status)
        if query.reject_ids:
            statement = statement.where(rejects.c.reject_id.in_(query.reject_ids))
        return statement

    def list(self, query: RejectFilter, after_id: int | None, limit: int) -> list[Reject]:
        statement = self._filtered(select(Reject).order_by(rejects.c.reject_id).limit(limit), query)
        if after_id is not None:
            statement = statement.where(rejects.c.reject_id > after_id)
        return list(self.session.scalars(statement))

    def counts(self, query: RejectFilter) -> dict[str, int]:
        statement = self._filtered(
            select(rejects.c.reason, func.count()).group_by(rejects.c.reason), query
        )
        return {reason: int(count) for reason, count in self.session.execute(statement)}

    def update(self, reject: Reject) -> None:
        # Loaded through this session: changes are flushed at commit.
        self.session.add(reject)


class SqlCounterRepository(CounterRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def read(self, cycles: Collection[tuple[str, str]]) -> dict[CounterKey, int]:
        pairs = list(cycles)
        found: dict[CounterKey, int] = {}
        table = usage_counters
        for start in range(0, len(pairs), _CHUNK):
            rows = self.session.execute(
                select(
                    table.c.account_id, table.c.cycle_start, table.c.counter, table.c.units
                ).where(
                    tuple_(table.c.account_id, table.c.cycle_start).in_(
                        pairs[start : start + _CHUNK]
                    )
                )
            )
            for account_id, cycle, counter, units in rows:
                found[(account_id, cycle, counter)] = int(units)
        return found

    def increment(self, increments: dict[CounterKey, int]) -> None:
        if not increments:
            return
        dialect = self.session.get_bind().dialect.name
        upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = upsert(usage_counters)
        statement = statement.on_conflict_do_update(
            index_elements=["account_id", "cycle_start", "counter"],
            set_={"units": usage_counters.c.units + statement.excluded.units},
        )
        self.session.execute(
            statement,
            [
                {"account_id": a, "cycle_start": c, "counter": n, "units": units}
                for (a, c, n), units in sorted(increments.items())
            ],
        )

    def lock(self, account_ids: Collection[str]) -> None:
        """One lock row per account (``cycle_start`` "", counter "lock"), upserted.

        The upsert locks the row whether it is new or not (PostgreSQL: a row lock
        until commit; SQLite: the write lock of the database, taken by this first
        write of the transaction, before the counters are read). Rows are locked in
        account order, so two units never wait for each other in a circle.
        """
        if not account_ids:
            return
        dialect = self.session.get_bind().dialect.name
        upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = upsert(usage_counters)
        statement = statement.on_conflict_do_update(
            index_elements=["account_id", "cycle_start", "counter"],
            set_={"units": usage_counters.c.units},
        )
        rows = [
            {"account_id": a, "cycle_start": "", "counter": LOCK_COUNTER, "units": 0}
            for a in sorted(set(account_ids))
        ]
        try:
            for start in range(0, len(rows), _CHUNK):
                self.session.execute(statement, rows[start : start + _CHUNK])
        except (OperationalError, psycopg.errors.OperationalError) as exc:
            raise Aborted("counters locked by a concurrent transaction; retry") from exc


class SqlRerateRepository(RerateRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, run: RerateRun) -> None:
        self.session.add(run)

    def get(self, rerate_id: str) -> RerateRun | None:
        return self.session.get(RerateRun, rerate_id)
