"""The SQL ledger: group commit of journal entries, idempotent by entry id (CHG-9).

Every script that changes balances appends journal entries under the account's
hash tag in the same atomic step. ``SqlLedgerWriter.commit`` makes them durable:
entries of all requests waiting at that moment go into **one** transaction
(group commit), inserted with ``ON CONFLICT DO NOTHING`` on the entry id, so an
entry committed twice (by its request and by the reconciler after a crash, or by
a retry) counts once. Only then does the request answer; afterwards the entries
are deleted from Redis (a lost delete is harmless: the next drain re-commits a
no-op).

Entry kinds (``k``): ``L`` ledger movement, ``B`` bucket metadata, ``P`` account
policy (applied when its version is newer), ``C`` the answered request of a
session, every request (kept for idempotency after a Redis loss), ``E`` a threshold
event (written to the outbox with an event id derived from the entry id, so it
is published once), ``K`` an idempotency key (AIP-155).

Commits run on a dedicated thread with one connection; on SQLite with a single
worker process they run inline on the event loop (a local commit costs less than
the thread hand-off). On SQLite the writer's connection never checkpoints the WAL
itself (a checkpoint fsyncs, which would stall the event loop): a passive
checkpoint runs on a thread of its own at most every second after commits. Only
two hot tables (ledger entries, sessions) are written with plain driver SQL; the
rest goes through SQLAlchemy Core.

The fence against a Redis loss: an entry read from Redis more than
``stale_after`` seconds ago is not committed through this path (its caller gets
UNAVAILABLE and retries; the entry, if Redis still has it, is drained again
fresh). With the transaction itself bounded by ``statement_timeout`` /
``busy_timeout``, no entry of a lost Redis incarnation can reach SQL later than
``stale_after`` + the timeout after it was read: the rebuild waits that long
(``restore.lua``'s fence) before reading its snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
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
from services.charging.service_layer.ports import BalanceStore, JournalEntry, SqlOnly
from services.common.clock import Clock
from services.common.db import is_sqlite
from services.common.errors import Unavailable
from services.common.events import DomainEvent, EventEnvelope, stream_for
from services.common.telemetry import meter, tracer

log = logging.getLogger(__name__)

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


# Requests waiting for a commit that make a batch worth committing at once.
_DEEP_QUEUE = 32
# How often, at most, the WAL of a SQLite ledger is checkpointed (after commits).
_CHECKPOINT_EVERY_S = 1.0


@dataclass
class _Waiting:
    entries: Sequence[JournalEntry]
    extras: Sequence[SqlOnly]
    observed: float
    future: asyncio.Future[None]
    carrier: dict[str, str] = field(default_factory=dict)


class SqlLedgerWriter:
    """``LedgerWriter``: one background task commits everything waiting, in one transaction."""

    def __init__(
        self,
        engine: Engine,
        store: BalanceStore,
        clock: Clock,
        *,
        max_entries: int = 5000,
        stale_after: float = 1.5,
        transaction_timeout_ms: int = 2000,
        linger_s: float = 0.0,
        wait_turns: int = 0,
        inline: bool | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self._max_entries = max_entries
        self._stale_after = stale_after
        self._timeout_ms = transaction_timeout_ms
        self._linger_s = linger_s
        self._wait_turns = wait_turns
        self._sqlite = is_sqlite(engine)
        self._inline = self._sqlite if inline is None else inline
        self._after_commit = after_commit
        self._queue: list[_Waiting] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # One thread and one connection for every commit: no pool checkout, and the
        # timeouts of the fence are set once per connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._connection: Connection | None = None
        # SQLite: WAL checkpoints (they fsync) on a thread of their own, off the loop.
        self._checkpointer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-checkpoint")
            if self._sqlite
            else None
        )
        self._checkpoint_connection: Connection | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        self._last_checkpoint = time.monotonic()
        self._batch_sizes = meter().create_histogram(
            "reckon.charging.ledger.batch", unit="{request}", description="requests per commit"
        )
        # One point per group commit (not per request): what a batch waited on SQL (ADR 0052).
        self._commit_duration = meter().create_histogram(
            "reckon.charging.ledger.commit.duration",
            unit="ms",
            description="Duration of one ledger group commit, thread hand-over included",
        )

    async def commit(self, entries: Sequence[JournalEntry], extras: Sequence[SqlOnly] = ()) -> None:
        if not entries and not extras:
            return
        loop = asyncio.get_running_loop()
        carrier: dict[str, str] = {}
        inject(carrier)
        waiting = _Waiting(entries, extras, time.monotonic(), loop.create_future(), carrier)
        self._queue.append(waiting)
        self._ensure_running()
        assert self._wake is not None
        self._wake.set()
        await waiting.future

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())

    async def close(self, wait_s: float = 10.0) -> None:
        """Commit what is waiting, then stop. Cooperative: redis-py may swallow a
        cancellation raised inside its I/O, so the loop is asked to end, not cancelled."""
        if self._task is not None and self._wake is not None:
            self._closing = True
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=wait_s)
            if not done:
                self._task.cancel()
            self._task = None
        if self._inline:
            self._disconnect()
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        if self._checkpointer is not None:
            if self._checkpointing is not None:
                await asyncio.wait({self._checkpointing}, timeout=wait_s)
            await asyncio.get_running_loop().run_in_executor(
                self._checkpointer, self._disconnect_checkpoint
            )

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if self._queue and self._linger_s:
                # A moment for more requests to join: fewer, larger transactions.
                await asyncio.sleep(self._linger_s)
            for _ in range(self._wait_turns if self._queue else 0):
                # Requests whose scripts answered in these turns join this commit
                # (ADR 0019: behind gRPC they arrive about one per turn); a deep queue
                # (stream load) does not wait.
                if len(self._queue) >= _DEEP_QUEUE:
                    break
                await asyncio.sleep(0)
            while self._queue:
                await self._commit_batch(self._take_batch())
            if self._closing:
                return
            await self._wake.wait()
            self._wake.clear()

    def _take_batch(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        count = 0
        while self._queue and (
            not batch or count + len(self._queue[0].entries) <= self._max_entries
        ):
            item = self._queue.pop(0)
            batch.append(item)
            count += len(item.entries)
        return batch

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        now = time.monotonic()
        fresh = []
        for item in batch:
            if now - item.observed > self._stale_after:
                # Too old to be sure Redis was not rebuilt meanwhile (the fence): refuse.
                item.future.set_exception(
                    Unavailable("the ledger is busy; retry", reason="LEDGER_BUSY")
                )
            else:
                fresh.append(item)
        if not fresh:
            return
        entries = [e for item in fresh for e in item.entries]
        extras = [x for item in fresh for x in item.extras]
        carriers = {e.entry_id: item.carrier for item in fresh for e in item.entries}
        started = time.perf_counter()
        try:
            if self._inline:
                # SQLite is a local file: a commit of a batch takes ~0.1-0.3 ms of CPU
                # and no network wait, less than handing it to a thread costs (wake-up
                # plus GIL hand-over per batch). Requests arriving meanwhile form the
                # next batch.
                events = self._write(entries, extras, carriers)
            else:
                context = copy_context()  # the caller's trace context, as to_thread would
                events = await asyncio.get_running_loop().run_in_executor(
                    self._executor, context.run, self._write, entries, extras, carriers
                )
        except Exception as exc:  # every waiting request learns it
            log.exception("ledger commit of %d entries failed", len(entries))
            error = Unavailable("the ledger could not commit; retry", reason="LEDGER_UNAVAILABLE")
            error.__cause__ = exc
            for item in fresh:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self._commit_duration.record((time.perf_counter() - started) * 1000.0)
        for item in fresh:
            if not item.future.done():
                item.future.set_result(None)
        self._batch_sizes.record(len(fresh))
        self._maybe_checkpoint()
        if events and self._after_commit is not None:
            self._after_commit()
        if entries:
            # Queued, not awaited: the next batch need not wait for Redis to forget this one.
            try:
                self._store.ack(entries)
            except Exception:  # noqa: BLE001 - the reconciler drains them again (no-ops)
                log.warning("could not forget %d committed journal entries", len(entries))

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self._engine.connect()
            # Bounded waiting for locks: part of the fence (module docstring).
            if is_sqlite(self._engine):
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(self._timeout_ms)}")
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")  # _checkpoint's
            else:
                connection.exec_driver_sql(f"SET statement_timeout = {int(self._timeout_ms)}")
            connection.commit()
            self._connection = connection
        return self._connection

    def _write(
        self,
        entries: Sequence[JournalEntry],
        extras: Sequence[SqlOnly],
        carriers: dict[str, dict[str, str]],
    ) -> int:
        connection = self._connect()
        try:
            if is_hot(entries, extras):
                # Straight on the DBAPI connection: SQLAlchemy never began a transaction
                # on ``connection`` (nothing ran through it), so the driver's own
                # transaction is the only one, committed or rolled back here.
                dbapi = connection.connection
                try:
                    apply_hot_entries(dbapi, self._sqlite, entries)
                    dbapi.commit()
                except BaseException:
                    dbapi.rollback()
                    raise
                return 0
            with connection.begin():
                return apply_entries(self._engine, connection, entries, extras, carriers)
        except Exception:
            # A broken connection is replaced on the next batch.
            self._connection = None
            connection.close()
            raise

    def _maybe_checkpoint(self) -> None:
        if self._checkpointer is None or (
            self._checkpointing is not None and not self._checkpointing.done()
        ):
            return
        now = time.monotonic()
        if now - self._last_checkpoint < _CHECKPOINT_EVERY_S:
            return
        self._last_checkpoint = now
        self._checkpointing = asyncio.get_running_loop().run_in_executor(
            self._checkpointer, self._checkpoint
        )

    def _checkpoint(self) -> None:
        """Copy committed WAL frames into the database file (PASSIVE: writers go on)."""
        try:
            if self._checkpoint_connection is None:
                self._checkpoint_connection = self._engine.connect()
            self._checkpoint_connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            self._checkpoint_connection.rollback()
        except Exception:  # the next one tries again; meanwhile SQLite's WAL only grows
            log.warning("WAL checkpoint of the ledger failed", exc_info=True)
            self._disconnect_checkpoint()

    def _disconnect_checkpoint(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
            self._checkpoint_connection = None

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
