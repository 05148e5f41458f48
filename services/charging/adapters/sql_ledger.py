"""The SQL ledger: group commit of journal entries, idempotent by entry id (CHG-9).

Every script that changes balances appends journal entries under the account's
hash tag in the same atomic step. ``SqlLedgerWriter.commit`` makes them durable:
entries of all requests waiting at that moment go into **one** transaction
(group commit), inserted with ``ON CONFLICT DO NOTHING`` on the entry id, so an
entry committed twice (by its request and by the reconciler after a crash, or by
a retry) counts once. Only then does the request answer; afterwards the entries
are deleted from Redis (a lost delete is harmless: the next drain re-commits a
no-op).

How each kind of entry becomes rows is in ``ledger_entries``.

Commits run on a dedicated thread with one connection; on SQLite with a single
worker process they run inline on the event loop (a local commit costs less than
the thread hand-off). On SQLite the writer's connection never checkpoints the WAL
itself (a checkpoint fsyncs, which would stall the event loop): a passive
checkpoint runs on a thread of its own at most every second after commits.

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
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field

from opentelemetry.propagate import inject
from sqlalchemy import Connection, Engine

from services.charging.adapters.ledger_entries import (
    SOURCE,
    apply_entries,
    apply_hot_entries,
    event_of,
    idempotency_scope,
    is_hot,
)
from services.charging.service_layer.ports import BalanceStore, JournalEntry, SqlOnly
from services.common.clock import Clock
from services.common.db import is_sqlite
from services.common.errors import Unavailable
from services.common.telemetry import meter

log = logging.getLogger(__name__)


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


# The writer, and what this module held before the rows moved to ledger_entries.
__all__ = [
    "SOURCE",
    "SqlLedgerWriter",
    "apply_entries",
    "apply_hot_entries",
    "event_of",
    "idempotency_scope",
    "is_hot",
]
