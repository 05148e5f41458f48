"""SQL repositories of the dunning service (see ``service_layer.unit_of_work``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.state import InstanceState

from services.common.errors import Aborted
from services.dunning.adapters.orm import (
    dunned_accounts,
    dunned_invoices,
    dunning_policies,
    dunning_reactions,
    dunning_run_items,
    dunning_runs,
)
from services.dunning.domain.model import (
    OPEN_STATES,
    CaseState,
    DunnedAccount,
    DunnedInvoice,
    PlannedReaction,
    local_date,
)
from services.dunning.domain.policy import Policy
from services.dunning.service_layer.policy_document import read_policy
from services.dunning.service_layer.unit_of_work import ReactionRecord, Run, StoredPolicy

_CHUNK = 5000
# The zones of the world are between UTC-12 and UTC+14: at an instant, an account's
# local date is at most one day before or after the UTC date.
_EARLIEST, _LATEST = timedelta(hours=-12), timedelta(hours=14)
_OPEN_CASE_STATES = (CaseState.ACTIVE.value, CaseState.PAUSED.value)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def copy_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many new rows: one ``COPY`` on PostgreSQL, in this session's transaction
    (psycopg adapts Decimal, date and aware datetime values itself), chunked
    ``executemany`` elsewhere. The values are what the columns bind: no TypeDecorator
    conversion is needed for them (ExactDecimal is NUMERIC and UtcDateTime is
    timestamptz on PostgreSQL). A duplicate key raises ``IntegrityError`` either way."""
    if not rows:
        return
    if not is_postgres(session):
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(table), rows[start : start + _CHUNK])
        return
    import psycopg

    names = list(rows[0])
    driver = session.connection().connection.driver_connection
    columns = ", ".join(f'"{name}"' for name in names)
    try:
        with (
            driver.cursor() as cursor,  # type: ignore[union-attr]
            cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy,
        ):
            for row in rows:
                copy.write_row([row[name] for name in names])
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc


def among(session: Session, column: Column[str], values: Sequence[str]) -> ColumnElement[bool]:
    """``column`` is one of ``values``: one array parameter on PostgreSQL (the statement's
    text stays the same whatever the count, so it is parsed once, not a thousand
    placeholders per message), ``IN`` elsewhere."""
    if is_postgres(session):
        return column == any_(bindparam(None, list(values), type_=ARRAY(String())))
    return column.in_(list(values))


def _unnest_update(
    session: Session,
    table: str,
    key: str,
    columns: dict[str, str],
    rows: Sequence[dict[str, Any]],
    *,
    version: bool = False,
) -> int:
    """PostgreSQL: update many rows with one statement, ``UPDATE ... FROM unnest(arrays)``
    (one parameter per column, whatever the number of rows); with ``version`` each row
    names the version it read and gets it plus one. The number of rows updated."""
    names = [key, *(["version"] if version else []), *columns]
    types = {key: "varchar", "version": "integer", **columns}
    sets = ", ".join(f"{c} = v.{c}" for c in columns)
    if version:
        sets += f", version = {table}.version + 1"
    sources = ", ".join(f"CAST(:{n} AS {types[n]}[])" for n in names)
    check = f" AND {table}.version = v.version" if version else ""
    # The key also as ``= ANY``: without it the planner joins the unnest (which it
    # guesses small) by hashing the whole table, 165 ms instead of 22 at 100,000 rows.
    statement = text(
        f"UPDATE {table} SET {sets} FROM unnest({sources}) AS v({', '.join(names)})"
        f" WHERE {table}.{key} = v.{key}{check}"
        f" AND {table}.{key} = ANY(CAST(:{key} AS varchar[]))"
    )
    params = {name: [row[name] for row in rows] for name in names}
    return int(session.execute(statement, params).rowcount)  # type: ignore[attr-defined]


@lru_cache(maxsize=256)
def _parsed(document: str, version: int) -> Policy:
    """Policies are read by every work message: parse each stored version once per process
    (a stored version never changes; a parsed ``Policy`` is immutable)."""
    return read_policy(document, version=version)


# What judging an account changes (its case), with the PostgreSQL type of each.
_CASE_COLUMNS: dict[str, str] = {
    "episode_id": "varchar",
    "state": "varchar",
    "level": "integer",
    "level_since": "date",
    "started_on": "date",
    "ended_on": "date",
    "end_reason": "varchar",
    "policy_code": "varchar",
    "policy_version": "integer",
    "service_action": "varchar",
}
# What judging changes on an invoice.
_JUDGED_INVOICE_COLUMNS: dict[str, str] = {
    "highest_level": "integer",
    "fees_charged": "numeric",
    "interest_through": "date",
}


def _written(session: Session, instances: Sequence[object]) -> None:
    """Tell the session these objects' changes are in the database, as its own flush
    would (SQLAlchemy's internal mass "commit all"): nothing left to write at commit.
    Far cheaper than ``expunge`` (which walks cascades) for a message's thousand."""
    states = [instance_state(i) for i in instances]
    InstanceState._commit_all_states([(s, s.dict) for s in states], session.identity_map)


class SqlAccounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, account_id: str) -> DunnedAccount | None:
        return self.session.get(DunnedAccount, account_id)

    def add(self, account: DunnedAccount) -> None:
        self.session.add(account)

    def save_many(self, accounts: Sequence[DunnedAccount]) -> None:
        """Write the changed ones together, version-checked, not one ORM UPDATE each.

        The ORM flushes a versioned row with an UPDATE of its own (it must check each
        row's count); a work message changes up to a thousand accounts. Here every row
        names the version it read; if any was changed meanwhile, the total row count
        falls short and the unit is ABORTED, as the ORM would. The daily run changes
        only an account's case (``_CASE_COLUMNS``): on PostgreSQL those are written by
        one ``UPDATE ... FROM unnest``, elsewhere by an executemany of every column.
        The rows are then clean for the session (nothing to flush twice).
        """
        changed = [a for a in accounts if instance_state(a).modified]
        if not changed:
            return
        if is_postgres(self.session):
            rows = [
                {
                    "account_id": a.account_id,
                    "version": a.version,
                    **{name: getattr(a, name) for name in _CASE_COLUMNS},
                    "state": str(a.state),  # a StrEnum, or the text as loaded
                }
                for a in changed
            ]
            updated = _unnest_update(
                self.session, "dunned_accounts", "account_id", _CASE_COLUMNS, rows, version=True
            )
        else:
            updated = self._save_each(changed)
        if updated != len(changed):
            raise Aborted("an account changed while the run judged it; retry")
        for account in changed:
            set_committed_value(account, "version", account.version + 1)
        _written(self.session, changed)

    def _save_each(self, changed: Sequence[DunnedAccount]) -> int:
        columns = [c.name for c in dunned_accounts.c if c.name not in ("account_id", "version")]
        rows = [
            {
                **{f"v_{name}": getattr(a, name) for name in columns},
                "b_id": a.account_id,
                "b_version": a.version,
                "v_version": a.version + 1,
            }
            for a in changed
        ]
        statement = (
            update(dunned_accounts)
            .where(
                dunned_accounts.c.account_id == bindparam("b_id"),
                dunned_accounts.c.version == bindparam("b_version"),
            )
            .values({name: bindparam(f"v_{name}") for name in [*columns, "version"]})
        )
        connection = self.session.connection()
        if connection.dialect.supports_sane_multi_rowcount:
            return int(connection.execute(statement, rows).rowcount)
        return sum(connection.execute(statement, row).rowcount for row in rows)

    def get_many(self, account_ids: Sequence[str]) -> Sequence[DunnedAccount]:
        query = select(DunnedAccount).where(
            among(self.session, dunned_accounts.c.account_id, account_ids)
        )
        return list(self.session.scalars(query))

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
    ) -> Sequence[DunnedAccount]:
        query = select(DunnedAccount)
        if state:
            query = query.where(dunned_accounts.c.state == state)
        else:
            query = query.where(dunned_accounts.c.state != CaseState.ENDED.value)
        if level:
            query = query.where(dunned_accounts.c.level == level)
        if policy_code:
            query = query.where(dunned_accounts.c.policy_code == policy_code)
        if group_id:
            query = query.where(dunned_accounts.c.group_id == group_id)
        if reseller_id:
            query = query.where(dunned_accounts.c.reseller_id == reseller_id)
        if after:
            query = query.where(dunned_accounts.c.account_id > after)
        query = query.order_by(dunned_accounts.c.account_id).limit(limit)
        return list(self.session.scalars(query))


class SqlInvoices:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, invoice_id: str) -> DunnedInvoice | None:
        return self.session.get(DunnedInvoice, invoice_id)

    def add(self, invoice: DunnedInvoice) -> None:
        self.session.add(invoice)
        # Later queries in this unit (autoflush is off) must see it.
        self.session.flush([invoice])

    def of_account(self, account_id: str) -> Sequence[DunnedInvoice]:
        query = select(DunnedInvoice).where(dunned_invoices.c.account_id == account_id)
        return list(self.session.scalars(query.order_by(dunned_invoices.c.invoice_id)))

    def save_judged(self, invoices: Sequence[DunnedInvoice]) -> None:
        """PostgreSQL: write what judging changed on these invoices (level, fees, interest)
        with one ``UPDATE ... FROM unnest`` instead of the ORM's executemany at commit.
        Elsewhere the ORM writes them at commit as usual."""
        if not is_postgres(self.session):
            return
        changed = [i for i in invoices if instance_state(i).modified]
        if not changed:
            return
        rows = [
            {
                "invoice_id": i.invoice_id,
                **{name: getattr(i, name) for name in _JUDGED_INVOICE_COLUMNS},
            }
            for i in changed
        ]
        _unnest_update(self.session, "dunned_invoices", "invoice_id", _JUDGED_INVOICE_COLUMNS, rows)
        _written(self.session, changed)

    def of_accounts(self, account_ids: Sequence[str]) -> dict[str, list[DunnedInvoice]]:
        query = select(DunnedInvoice).where(
            among(self.session, dunned_invoices.c.account_id, account_ids)
        )
        found: dict[str, list[DunnedInvoice]] = {}
        for invoice in self.session.scalars(query.order_by(dunned_invoices.c.invoice_id)):
            found.setdefault(invoice.account_id, []).append(invoice)
        return found

    def of_customer(self, customer_id: str) -> Sequence[DunnedInvoice]:
        query = select(DunnedInvoice).where(dunned_invoices.c.customer_id == customer_id)
        return list(self.session.scalars(query.order_by(dunned_invoices.c.invoice_id)))

    def customers(self, *, after: str, limit: int) -> Sequence[str]:
        query = (
            select(dunned_invoices.c.customer_id)
            .where(dunned_invoices.c.customer_id > after)
            .group_by(dunned_invoices.c.customer_id)
            .order_by(dunned_invoices.c.customer_id)
            .limit(limit)
        )
        return list(self.session.scalars(query))


class SqlPolicies:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _stored(self, row: object) -> StoredPolicy:
        policy = _parsed(row.document, row.version)  # type: ignore[attr-defined]
        return StoredPolicy(policy, row.document, row.create_time)  # type: ignore[attr-defined]

    def latest(self, code: str) -> StoredPolicy | None:
        row = self.session.execute(
            select(dunning_policies)
            .where(dunning_policies.c.code == code)
            .order_by(dunning_policies.c.version.desc())
            .limit(1)
        ).first()
        return self._stored(row) if row else None

    def add(self, stored: StoredPolicy) -> None:
        policy = stored.policy
        self.session.execute(
            insert(dunning_policies).values(
                code=policy.code,
                version=policy.version,
                name=policy.name,
                document=stored.document,
                group_ids=json.dumps(sorted(policy.groups)),
                reseller_ids=json.dumps(sorted(policy.resellers)),
                is_default=policy.is_default,
                create_time=stored.create_time,
            )
        )

    def all_latest(self) -> Sequence[StoredPolicy]:
        newest = (
            select(dunning_policies.c.code, func.max(dunning_policies.c.version).label("v"))
            .group_by(dunning_policies.c.code)
            .subquery()
        )
        rows = self.session.execute(
            select(dunning_policies)
            .join(
                newest,
                and_(
                    dunning_policies.c.code == newest.c.code,
                    dunning_policies.c.version == newest.c.v,
                ),
            )
            .order_by(dunning_policies.c.code)
        ).all()
        return [self._stored(row) for row in rows]


def _legacy_judged_at(run_date: date) -> datetime:
    """Runs stored before ``judged_at`` existed judged at 01:00 UTC (the default hour)."""
    return datetime(run_date.year, run_date.month, run_date.day, 1, tzinfo=UTC)


class SqlRuns:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _run(self, row: object | None) -> Run | None:
        if row is None:
            return None
        counts: dict[str, int] = {
            str(status): int(count)
            for status, count in self.session.execute(
                select(dunning_run_items.c.status, func.count())
                .where(dunning_run_items.c.run_id == row.run_id)  # type: ignore[attr-defined]
                .group_by(dunning_run_items.c.status)
            ).all()
        }
        escalated = self.session.execute(
            select(func.count()).where(
                dunning_run_items.c.run_id == row.run_id,  # type: ignore[attr-defined]
                dunning_run_items.c.escalated.is_(True),
            )
        ).scalar_one()
        return Run(
            run_id=row.run_id,  # type: ignore[attr-defined]
            run_date=row.run_date,  # type: ignore[attr-defined]
            state=row.state,  # type: ignore[attr-defined]
            accounts_total=row.accounts_total,  # type: ignore[attr-defined]
            accounts_done=int(counts.get("DONE", 0)),
            accounts_escalated=int(escalated),
            start_time=row.start_time,  # type: ignore[attr-defined]
            end_time=row.end_time,  # type: ignore[attr-defined]
        )

    def get(self, run_id: str) -> Run | None:
        row = self.session.execute(
            select(dunning_runs).where(dunning_runs.c.run_id == run_id)
        ).first()
        return self._run(row)

    def by_date(self, run_date: date) -> Run | None:
        row = self.session.execute(
            select(dunning_runs).where(dunning_runs.c.run_date == run_date)
        ).first()
        return self._run(row)

    def judged_at(self, run_id: str) -> tuple[date, datetime] | None:
        row = self.session.execute(
            select(dunning_runs.c.run_date, dunning_runs.c.judged_at).where(
                dunning_runs.c.run_id == run_id
            )
        ).first()
        if row is None:
            return None
        return row.run_date, row.judged_at or _legacy_judged_at(row.run_date)

    def _candidates(self, judged_at: datetime) -> Select[tuple[str]]:
        """Accounts with an open invoice past its due date *in the account's zone* at
        ``judged_at``, or with a case open: one SQL question, no row per paid account.

        The zones of the accounts whose open invoices fall due before the latest local
        date anywhere are read first (a handful of names); each zone's local date then
        becomes a condition ``time_zone IN (...) AND due_date < that date``.
        """
        latest = (judged_at + _LATEST).date()
        a, i = dunned_accounts, dunned_invoices
        open_due = and_(i.c.status.in_(sorted(OPEN_STATES)), i.c.due_date < latest)
        zones = self.session.scalars(
            select(a.c.time_zone)
            .distinct()
            .where(a.c.account_id.in_(select(i.c.account_id).where(open_due)))
        ).all()
        by_date: dict[date, list[str]] = {}
        for zone in zones:
            by_date.setdefault(local_date(judged_at, zone), []).append(zone)
        conditions: list[ColumnElement[bool]] = [
            and_(a.c.time_zone.in_(sorted(names)), i.c.due_date < day)
            for day, names in sorted(by_date.items())
        ]
        overdue = (
            select(i.c.account_id)
            .join(a, a.c.account_id == i.c.account_id)
            .where(i.c.status.in_(sorted(OPEN_STATES)), or_(false(), *conditions))
        )
        open_cases = select(a.c.account_id).where(a.c.state.in_(_OPEN_CASE_STATES))
        union = overdue.union(open_cases).subquery()
        return select(union.c.account_id)

    def candidates(self, run_date: date, judged_at: datetime | None = None) -> Sequence[str]:
        query = self._candidates(judged_at or _legacy_judged_at(run_date))
        return list(self.session.scalars(query.order_by("account_id")))

    def add(self, run_id: str, run_date: date, judged_at: datetime, now: datetime) -> int:
        """The run and a PENDING item per candidate, written by the database itself
        (``INSERT ... SELECT``): no account id travels to Python. How many items."""
        try:
            self.session.execute(
                insert(dunning_runs).values(
                    run_id=run_id,
                    run_date=run_date,
                    state="RUNNING",
                    accounts_total=0,
                    judged_at=judged_at,
                    start_time=now,
                )
            )
        except IntegrityError as exc:
            # A concurrent start took the date (unique): the caller resumes that run.
            raise Aborted(f"the run of {run_date} was started concurrently") from exc
        added = self._insert_items(run_id, self._candidates(judged_at))
        self.session.execute(
            update(dunning_runs).where(dunning_runs.c.run_id == run_id).values(accounts_total=added)
        )
        return added

    def _insert_items(self, run_id: str, candidates: Select[tuple[str]]) -> int:
        """Insert a PENDING item per candidate; how many the run has now (PostgreSQL
        does not report the row count of an ``INSERT ... SELECT`` through every driver)."""
        found = candidates.subquery()
        self.session.execute(
            insert(dunning_run_items).from_select(
                ["run_id", "account_id", "status", "escalated"],
                select(
                    literal(run_id, dunning_run_items.c.run_id.type),
                    found.c.account_id,
                    literal("PENDING", dunning_run_items.c.status.type),
                    literal(False, dunning_run_items.c.escalated.type),
                ),
            )
        )
        return int(
            self.session.execute(
                select(func.count()).where(dunning_run_items.c.run_id == run_id)
            ).scalar_one()
        )

    def add_missing(self, run_id: str, judged_at: datetime) -> int:
        candidates = self._candidates(judged_at).subquery()
        missing = select(candidates.c.account_id).where(
            ~select(dunning_run_items.c.account_id)
            .where(
                dunning_run_items.c.run_id == run_id,
                dunning_run_items.c.account_id == candidates.c.account_id,
            )
            .exists()
        )
        before = int(
            self.session.execute(
                select(dunning_runs.c.accounts_total).where(dunning_runs.c.run_id == run_id)
            ).scalar_one()
        )
        total = self._insert_items(run_id, missing)
        if total == before:
            return 0
        self.session.execute(
            update(dunning_runs)
            .where(dunning_runs.c.run_id == run_id)
            .values(state="RUNNING", end_time=None, accounts_total=total)
        )
        return total - before

    def pending(self, run_id: str) -> Sequence[str]:
        return list(
            self.session.scalars(
                select(dunning_run_items.c.account_id)
                .where(
                    dunning_run_items.c.run_id == run_id, dunning_run_items.c.status == "PENDING"
                )
                .order_by(dunning_run_items.c.account_id)
            )
        )

    def pending_among(self, run_id: str, account_ids: Sequence[str]) -> list[str]:
        pending = set(
            self.session.scalars(
                select(dunning_run_items.c.account_id).where(
                    dunning_run_items.c.run_id == run_id,
                    among(self.session, dunning_run_items.c.account_id, account_ids),
                    dunning_run_items.c.status == "PENDING",
                )
            )
        )
        return [a for a in account_ids if a in pending]

    def finish_items(self, run_id: str, account_ids: Sequence[str], *, escalated: set[str]) -> None:
        for flag in (True, False):
            chosen = [a for a in account_ids if (a in escalated) is flag]
            if chosen:
                self.session.execute(
                    update(dunning_run_items)
                    .where(
                        dunning_run_items.c.run_id == run_id,
                        among(self.session, dunning_run_items.c.account_id, chosen),
                    )
                    .values(status="DONE", escalated=flag)
                )

    def complete_if_done(self, run_id: str, now: datetime) -> bool:
        left = self.session.execute(
            select(func.count()).where(
                dunning_run_items.c.run_id == run_id, dunning_run_items.c.status == "PENDING"
            )
        ).scalar_one()
        if left:
            return False
        result = self.session.execute(
            update(dunning_runs)
            .where(dunning_runs.c.run_id == run_id, dunning_runs.c.state == "RUNNING")
            .values(state="COMPLETED", end_time=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class SqlReactions:
    """Reactions of one unit of work; new ones are inserted together at commit (``flush``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._new: list[dict[str, Any]] = []
        self._buffered: set[str] = set()
        self._known: set[str] | None = None

    def preload(self, accounts: Sequence[DunnedAccount]) -> None:
        """Every key a reaction of these accounts' current episodes may have: a key names
        its episode, so an account not in dunning (its next episode is new) has none."""
        in_dunning = [a for a in accounts if a.in_dunning]
        self._known = set()
        for start in range(0, len(in_dunning), _CHUNK):
            chunk = in_dunning[start : start + _CHUNK]
            self._known.update(
                self.session.scalars(
                    select(dunning_reactions.c.key).where(
                        among(
                            self.session,
                            dunning_reactions.c.account_id,
                            [a.account_id for a in chunk],
                        ),
                        among(
                            self.session,
                            dunning_reactions.c.episode_id,
                            sorted({a.episode_id for a in chunk}),
                        ),
                    )
                )
            )

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        buffered = self._buffered
        if self._known is not None:
            known = self._known
            return {k for k in keys if k in known or k in buffered}
        stored = set(
            self.session.scalars(
                select(dunning_reactions.c.key).where(dunning_reactions.c.key.in_(list(keys)))
            )
        )
        return stored | {k for k in keys if k in buffered}

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
        self._buffered.add(planned.key)
        self._new.append(
            {
                "key": planned.key,
                "account_id": account.account_id,
                "customer_id": account.customer_id,
                "episode_id": account.episode_id,
                "level": planned.level,
                "kind": kind or planned.kind.value,
                "invoice_id": planned.invoice_id,
                "template": planned.template,
                "amount": planned.amount.amount if planned.amount else None,
                "currency": planned.amount.currency if planned.amount else account.currency,
                "description": description,
                "status": status,
                "attempts": 0,
                "last_error": "",
                "run_date": run_date,
                "create_time": now,
                "done_time": now if status == "DONE" else None,
            }
        )

    def flush(self) -> None:
        """Insert the new reactions together (``COPY`` on PostgreSQL); a key a concurrent
        unit took fails here (IntegrityError, turned into ABORTED by the unit of work)
        and nothing commits."""
        if self._new:
            copy_rows(self.session, dunning_reactions, self._new)
            self._new = []
            self._buffered = set()

    def _records(self, query: object) -> list[ReactionRecord]:
        rows = self.session.execute(query).all()  # type: ignore[call-overload]
        return [
            ReactionRecord(
                key=r.key,
                account_id=r.account_id,
                customer_id=r.customer_id,
                episode_id=r.episode_id,
                level=r.level,
                kind=r.kind,
                invoice_id=r.invoice_id,
                template=r.template,
                amount=r.amount,
                currency=r.currency,
                description=r.description,
                status=r.status,
                attempts=r.attempts,
                run_date=r.run_date,
            )
            for r in rows
        ]

    def pending(self, limit: int) -> Sequence[ReactionRecord]:
        return self._records(
            select(dunning_reactions)
            .where(dunning_reactions.c.status == "PENDING")
            .order_by(dunning_reactions.c.create_time, dunning_reactions.c.key)
            .limit(limit)
        )

    def finish(self, key: str, status: str, now: datetime, error: str = "") -> None:
        self.session.execute(
            update(dunning_reactions)
            .where(dunning_reactions.c.key == key)
            .values(status=status, done_time=now, last_error=error)
        )

    def failed_attempt(self, key: str, error: str) -> None:
        self.session.execute(
            update(dunning_reactions)
            .where(dunning_reactions.c.key == key)
            .values(attempts=dunning_reactions.c.attempts + 1, last_error=error)
        )

    def handed_over(self, run_date: date) -> Sequence[ReactionRecord]:
        return self._records(
            select(dunning_reactions)
            .where(
                dunning_reactions.c.kind == "COLLECTIONS",
                dunning_reactions.c.run_date == run_date,
                dunning_reactions.c.status == "DONE",
            )
            .order_by(dunning_reactions.c.account_id)
        )
