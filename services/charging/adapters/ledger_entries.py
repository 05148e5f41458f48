"""Journal entries as SQL rows: what the ledger writer applies inside its transaction.

Entry kinds (``k``): ``L`` ledger movement, ``B`` bucket metadata, ``P`` account
policy (applied when its version is newer), ``C`` the answered request of a
session, every request (kept for idempotency after a Redis loss), ``E`` a threshold
event (written to the outbox with an event id derived from the entry id, so it
is published once), ``K`` an idempotency key (AIP-155).

Every insert is idempotent on the entry id (``ON CONFLICT DO NOTHING``; bucket
records and policies only when their version is newer). Only two hot tables
(ledger entries, sessions) are written with plain driver SQL; the rest goes
through SQLAlchemy Core. ``apply_hot_entries`` is the shortcut for a batch of
only those. ``sql_ledger.SqlLedgerWriter`` decides when and on which connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from sqlalchemy import Connection, Engine, Table, case, update
from sqlalchemy.dialects import postgresql, sqlite

from services.charging.adapters import orm
from services.charging.domain.events import BalanceLow, CreditLimitReached
from services.charging.domain.instants import from_ms
from services.charging.domain.units import unscaled_money
from services.charging.service_layer.ports import JournalEntry, SqlOnly
from services.common.db import is_sqlite
from services.common.events import DomainEvent, EventEnvelope, stream_for
from services.common.telemetry import tracer

SOURCE = "charging"


def idempotency_scope(scope: str, account_id: str) -> str:
    """Request ids are remembered per operation and account."""
    return f"charging.{scope}:{account_id}"


_LEDGER_COLUMNS = (
    "entry_id",
    "account_id",
    "bucket_id",
    "direction",
    "amount",
    "unit",
    "kind",
    "session_id",
    "request_number",
    "rating_group",
    "reference",
    "reason",
    "request_key",
    "created_at",
)
_SESSION_COLUMNS = (
    "account_id",
    "session_id",
    "last_request_number",
    "state",
    "request_type",
    "answer",
    "updated_at",
)


def _statements(sql: str) -> dict[bool, str]:
    """The statement for each driver's parameter style: {is SQLite: SQL}."""
    return {True: sql.replace("%s", "?"), False: sql}


_LEDGER_SQL = _statements(
    f"INSERT INTO ledger_entries ({', '.join(_LEDGER_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_LEDGER_COLUMNS))}) ON CONFLICT (entry_id) DO NOTHING"
)
_SESSIONS_SQL = _statements(
    f"INSERT INTO cc_sessions ({', '.join(_SESSION_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_SESSION_COLUMNS))}) "
    "ON CONFLICT (account_id, session_id) DO UPDATE SET "
    "last_request_number = excluded.last_request_number, state = excluded.state, "
    "request_type = excluded.request_type, answer = excluded.answer, "
    "updated_at = excluded.updated_at "
    "WHERE cc_sessions.last_request_number < excluded.last_request_number "
    # An operator's release (ADR 0035) records the same last request, released.
    "OR (cc_sessions.last_request_number = excluded.last_request_number "
    "AND excluded.state = 'X')"
)


def _bind(value: Any, sqlite_db: bool) -> Any:
    """A value as the driver takes it; instants as ``UtcDateTime`` stores them."""
    if isinstance(value, datetime):
        if sqlite_db:
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value
    return value


def _executemany(dbapi: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` for every row on a cursor of the DBAPI connection ``dbapi``.

    Not ``exec_driver_sql``: its execution context, events and statement tracing cost
    more than the driver's own work per batch on the ledger's hot path (profiled, see
    docs/decisions/0012). The caller owns the transaction.
    """
    cursor = dbapi.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


def _insert(engine: Engine, table: Table) -> Any:
    return sqlite.insert(table) if is_sqlite(engine) else postgresql.insert(table)


def event_of(entry: JournalEntry) -> DomainEvent | None:
    """The domain event of an ``E`` journal entry."""
    record = entry.record
    currency = str(record.get("cur", ""))
    if record.get("type") == "BalanceLow":
        return BalanceLow(
            account_id=entry.account_id,
            balance=unscaled_money(int(record["bal"]), currency),
            threshold=unscaled_money(int(record["thr"]), currency),
        )
    if record.get("type") == "CreditLimitReached":
        return CreditLimitReached(
            account_id=entry.account_id,
            percent=int(record["pct"]),
            used=unscaled_money(int(record["used"]), currency),
            credit_limit=unscaled_money(int(record["lim"]), currency),
        )
    return None


# Entry kinds a credit-control request produces: ledger movements and answered requests.
_HOT_KINDS = frozenset({"L", "C"})


def is_hot(entries: Sequence[JournalEntry], extras: Sequence[SqlOnly]) -> bool:
    """Only ledger movements and session answers: the batch can skip SQLAlchemy."""
    return not extras and all(entry.record.get("k") in _HOT_KINDS for entry in entries)


def apply_hot_entries(dbapi: Any, sqlite_db: bool, entries: Sequence[JournalEntry]) -> None:
    """``apply_entries`` for a batch that ``is_hot``, on a DBAPI connection (no commit).

    The same rows and statements as ``apply_entries``; what it saves is SQLAlchemy's
    transaction and execution machinery, most of a small batch's cost.
    """
    stamps: dict[int, Any] = {}
    seen: set[str] = set()
    ledger: list[tuple[Any, ...]] = []
    sessions: dict[tuple[str, str], tuple[Any, ...]] = {}
    for entry in entries:
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        r = entry.record
        at_ms = int(r["at"])
        at = stamps.get(at_ms)
        if at is None:
            at = stamps[at_ms] = _bind(from_ms(at_ms), sqlite_db)
        if r["k"] == "L":
            ledger.append(_ledger_row(entry, r, at))
        else:
            _session_row(entry, r, at, sessions)
    if ledger:
        _executemany(dbapi, _LEDGER_SQL[sqlite_db], ledger)
    if sessions:
        _executemany(dbapi, _SESSIONS_SQL[sqlite_db], list(sessions.values()))


def _ledger_row(entry: JournalEntry, r: dict[str, Any], at: Any) -> tuple[Any, ...]:
    key_of_request = r.get("rk")
    return (
        entry.entry_id,
        entry.account_id,
        r["b"],
        r["d"],
        int(r["q"]),
        r["u"],
        r["ek"],
        str(r.get("s", "")),
        int(r.get("n", 0)),
        int(r.get("g", 0)),
        str(r.get("r", ""))[:256],
        str(r.get("why", ""))[:512],
        key_of_request if key_of_request and key_of_request != ":" else None,
        at,
    )


def _session_row(
    entry: JournalEntry,
    r: dict[str, Any],
    at: Any,
    sessions: dict[tuple[str, str], tuple[Any, ...]],
) -> None:
    """The session's latest answered request (a batch may hold several of one session)."""
    key = (entry.account_id, str(r["s"]))
    number = int(r["n"])
    if (
        key not in sessions
        or sessions[key][2] < number
        or (
            sessions[key][2] == number and str(r["st"]) == "X"  # released (ADR 0035)
        )
    ):
        sessions[key] = (
            entry.account_id,
            key[1],
            number,
            str(r["st"]),
            str(r["t"]),
            str(r["ans"]),
            at,
        )


def apply_entries(
    engine: Engine,
    connection: Connection,
    entries: Sequence[JournalEntry],
    extras: Sequence[SqlOnly],
    carriers: dict[str, dict[str, str]],
) -> int:
    """Write entries and extras on ``connection`` (inside its transaction); returns events."""
    sqlite_db = is_sqlite(engine)
    stamps: dict[Any, Any] = {}

    def stamp(at: datetime) -> Any:
        # Entries of a batch share few instants: format each once.
        if at not in stamps:
            stamps[at] = _bind(at, sqlite_db)
        return stamps[at]

    seen: set[str] = set()
    ledger: list[tuple[Any, ...]] = []
    bucket_rows: list[dict[str, Any]] = []
    sessions: dict[tuple[str, str], tuple[Any, ...]] = {}
    policies: list[tuple[str, dict[str, Any]]] = []
    keys: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for entry in entries:
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        r = entry.record
        at = from_ms(int(r["at"]))
        if entry.kind == "L":
            ledger.append(_ledger_row(entry, r, stamp(at)))
        elif entry.kind == "B":
            meta = r["meta"]
            bucket_rows.append(
                {
                    "account_id": entry.account_id,
                    "bucket_id": r["b"],
                    "unit": meta["u"],
                    "priority": int(meta.get("p", 100)),
                    "valid_from": from_ms(int(meta["f"])) if meta.get("f") else None,
                    "valid_until": from_ms(int(meta["t"])) if meta.get("t") else None,
                    "services": json.dumps(list(meta.get("sv") or [])),
                    "rating_groups": json.dumps(list(meta.get("rg") or [])),
                    "label": str(meta.get("label", "")),
                    "main": bool(meta.get("main")),
                    "created_at": from_ms(int(meta["o"])) if meta.get("o") else at,
                    "meta_version": int(meta.get("v") or 0),
                }
            )
        elif entry.kind == "C":
            _session_row(entry, r, stamp(at), sessions)
        elif entry.kind == "P":
            policies.append((entry.account_id, {**r, "_at": at}))
        elif entry.kind == "K":
            keys.append(
                {
                    "scope": idempotency_scope(str(r["scope"]), entry.account_id),
                    "request_id": str(r["rid"]),
                    "fingerprint": str(r["fp"])[:64],
                    "resource_id": str(r["res"])[:64],
                    "created_at": at,
                }
            )
        elif entry.kind == "E":
            event = event_of(entry)
            if event is not None:
                outbox.append(
                    _outbox_row(event, f"evt_{entry.entry_id}", at, carriers.get(entry.entry_id))
                )
    if ledger:
        # The hot tables go straight to the driver: compiling SQLAlchemy constructs for
        # every batch cost more CPU than the database did (and the GIL with it).
        _executemany(connection.connection, _LEDGER_SQL[sqlite_db], ledger)
    if bucket_rows:
        # A bucket record is written when a bucket is made and at every change after
        # (UpdateBucket, CloseBucket: ADR 0021), each with a higher version. Only a
        # newer version is applied, so a replayed older record never undoes a change.
        # A new end is announced again (BucketExpiring/BucketExpired) before and when
        # it comes; the same end keeps what was already announced.
        insert = _insert(engine, orm.buckets)
        excluded, b = insert.excluded, orm.buckets.c
        same_end = excluded.valid_until == b.valid_until
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=["account_id", "bucket_id"],
                set_={
                    "priority": excluded.priority,
                    "valid_until": excluded.valid_until,
                    "label": excluded.label,
                    "meta_version": excluded.meta_version,
                    "expiring_notified_at": case((same_end, b.expiring_notified_at), else_=None),
                    "expired_notified_at": case((same_end, b.expired_notified_at), else_=None),
                },
                where=excluded.meta_version > b.meta_version,
            ),
            bucket_rows,
        )
    for account_id, p in policies:
        connection.execute(
            update(orm.accounts)
            .where(orm.accounts.c.account_id == account_id, orm.accounts.c.version < int(p["v"]))
            .values(
                mode=p["mode"],
                currency=p["cur"],
                credit_limit=int(p["lim"]),
                low_balance=int(p["low"]) if p.get("low") not in ("", None) else None,
                final_unit_action=p["fua"],
                redirect_address=p.get("fur", ""),
                restriction_filter_id=p.get("fuf", ""),
                version=int(p["v"]),
                updated_at=p["_at"],
            )
        )
    if sessions:
        _executemany(connection.connection, _SESSIONS_SQL[sqlite_db], list(sessions.values()))
    if keys:
        connection.execute(
            _insert(engine, orm.kit.idempotency_keys).on_conflict_do_nothing(
                index_elements=["scope", "request_id"]
            ),
            keys,
        )
    if outbox:
        connection.execute(
            _insert(engine, orm.kit.outbox).on_conflict_do_nothing(index_elements=["event_id"]),
            outbox,
        )
    inbox = [e.values for e in extras if e.kind == "inbox"]
    if inbox:
        connection.execute(
            _insert(engine, orm.kit.processed_events).on_conflict_do_nothing(
                index_elements=["consumer", "event_id"]
            ),
            inbox,
        )
    return len(outbox)


def _outbox_row(
    event: DomainEvent, event_id: str, at: Any, carrier: dict[str, str] | None
) -> dict[str, Any]:
    # A publish span under the request that caused the event, as the kit's unit of work does.
    parent: Context | None = extract(carrier) if carrier else None
    with tracer().start_as_current_span(
        f"reckon.event.publish {event.event_type}",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "redis",
            "messaging.operation": "publish",
            "messaging.destination.name": stream_for(SOURCE),
            "reckon.event.type": event.event_type,
        },
    ):
        context: dict[str, str] = {}
        inject(context)
        envelope = EventEnvelope(
            event_id=event_id,
            event_type=event.event_type,
            source=SOURCE,
            aggregate_id=event.aggregate_id,
            occurred_at=at,
            payload=event.payload(),
            trace_context=context,
        )
    return {
        "event_id": event_id,
        "event_type": event.event_type,
        "stream": stream_for(SOURCE),
        "envelope": envelope.to_json(),
        "created_at": at,
    }
