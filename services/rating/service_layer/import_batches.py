"""Record processing of an import: batches read, checked, rated and stored.

In batches (``batch_size`` lines, one transaction each) the records' accounts are
looked up in rating's account view, record ids that already have a rating are
found through the database, events in the future are refused, each record is
rated with the tariff in force at its time, and rated rows, rejects, the file's
counters and the ``UsageRated`` events (held until the file ends well) are stored
in one commit. Without cycle counters, batch N+1 is rated while batch N is
written; with them, each batch locks its accounts' counters first (ADR 0014).
Part of ``imports.UsageImporter``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO, Final

from services.common.errors import Aborted, ReckonError
from services.rating.service_layer.cycles import CycleCounters
from services.rating.service_layer.events import UsageRated
from services.rating.service_layer.import_outcome import ImportOutcome, ImportResult
from services.rating.service_layer.model import ImportFile, Reject
from services.rating.service_layer.pricing import (
    Subscriber,
    counter_cycles,
    find_accounts,
    rate_usage,
    stored_rating,
    subscriber,
)
from services.rating.service_layer.tariffs import Tariff, TariffCache
from services.rating.service_layer.unit_of_work import (
    RATED_COLUMNS,
    CounterKey,
    RatedTuple,
    RatingUnitOfWork,
)
from services.rating.service_layer.usage_formats import (
    ImportOptions,
    LayoutError,
    LineProblem,
    ParsedLine,
    RejectReason,
    SkippedLine,
    UsageFileReader,
    UsageRecord,
)

log = logging.getLogger(__name__)

# Called after each committed batch with (bytes read so far, lines read so far).
Progress = Callable[[int, int], None]

# The account view cache of one import is dropped when it grows past this, so a file
# touching millions of accounts still runs in bounded memory.
_ACCOUNT_CACHE_LIMIT: Final = 100_000
_NANOS: Final = Decimal(10) ** 9
# Records per UsageRated event: a stream entry stays a few hundred KB, so consumers
# reading 100 entries at a time hold tens of MB, not hundreds.
EVENT_RECORDS: Final = 1000
_GROSS: Final = RATED_COLUMNS.index("amount_nanos")
# Tries of a batch whose accounts' counters are locked (conflicts are rare and brief).
_LOCKED_ATTEMPTS: Final = 5


@dataclass
class _RatedBatch:
    """A batch rated and ready to store: what the writer commits in one transaction."""

    lines: list[ParsedLine]
    rows: list[RatedTuple] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)  # gross nanos per currency
    last_line: int = 0
    record_ids: set[str] = field(default_factory=set)
    # Cycle counter increments this batch caused, stored with it.
    increments: dict[CounterKey, int] = field(default_factory=dict)


class BatchRating(ImportOutcome):
    """Reading, rating and storing a file's records; the base of ``UsageImporter``."""

    _tariffs: TariffCache

    def _reader(
        self, import_file: ImportFile, stream: BinaryIO, options: ImportOptions
    ) -> UsageFileReader:
        """The file's records from after its last committed line (a resumed import)."""
        return UsageFileReader(
            stream,
            options,
            max_line_bytes=self.limits.max_line_bytes,
            max_field_chars=self.limits.max_field_chars,
            start_after_line=import_file.committed_line,
        )

    def _run(
        self,
        import_file: ImportFile,
        stream: BinaryIO,
        options: ImportOptions,
        tariff: Tariff,
        progress: Progress | None,
    ) -> ImportResult:
        """Rate batch N+1 while batch N is written: the database works on one core while
        Python rates on the other. At most one batch is in flight, so memory stays flat."""
        if tariff.needs_counters:
            return self._run_locked(import_file, stream, options, tariff, progress)
        file_id = import_file.file_id
        reader = self._reader(import_file, stream, options)
        accounts: dict[str, Subscriber | None] = {}
        counters = CycleCounters()
        header_saved = import_file.header is not None
        in_flight: Future[None] | None = None
        previous: _RatedBatch | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="rating-writer") as writer:
                for lines in _batches(iter(reader), self.limits.batch_size):
                    if not header_saved and reader.header_text is not None:
                        self._save_header(file_id, reader.header_text)
                        header_saved = True
                    if len(accounts) > _ACCOUNT_CACHE_LIMIT:
                        # Bounded memory: settle what is in flight, then read afresh.
                        self._settle(file_id, in_flight, previous, tariff, accounts, counters)
                        in_flight, previous = None, None
                        accounts.clear()
                        counters.forget()
                    in_flight_ids = previous.record_ids if previous is not None else set()
                    rated = self._rate_batch(
                        file_id, lines, tariff, accounts, in_flight_ids, counters
                    )
                    self._settle(file_id, in_flight, previous, tariff, accounts, counters)
                    # In the caller's context: the batch's INSERTs and UsageRated events
                    # belong to the import's trace, not to a root trace of their own.
                    in_flight = writer.submit(
                        copy_context().run, self._commit_batch, file_id, rated, tariff.revision
                    )
                    previous = rated
                    if progress is not None:
                        progress(reader.bytes_read, reader.lines_read)
                self._settle(file_id, in_flight, previous, tariff, accounts, counters)
        except LayoutError as exc:
            return self._finish(file_id, failure=str(exc))
        if not header_saved and reader.header_text is not None:
            self._save_header(file_id, reader.header_text)
        if progress is not None:
            progress(reader.bytes_read, reader.lines_read)
        return self._finish(file_id, failure=None)

    def _save_header(self, file_id: str, header: str) -> None:
        with self._uow_factory() as uow:
            stored = uow.imports.get(file_id)
            assert stored is not None
            stored.header = header
            uow.commit()

    def _rate_batch(
        self,
        file_id: str,
        lines: list[ParsedLine],
        tariff: Tariff,
        accounts: dict[str, Subscriber | None],
        in_flight_ids: set[str],
        counters: CycleCounters,
        locked_in: RatingUnitOfWork | None = None,
    ) -> _RatedBatch:
        """Check and rate one batch; reads the account view and rated ids, writes nothing.

        With ``locked_in``, the batch's accounts are locked in that unit before their
        counters are read, and the caller stores the batch in the same unit."""
        now = self._clock.now()
        latest = now + self.limits.future_tolerance
        batch = _RatedBatch(lines)
        records = [item for item in lines if isinstance(item, UsageRecord)]
        if locked_in is not None:
            existing = self._look_up(locked_in, records, tariff, accounts, counters, lock=True)
        else:
            with self._uow_factory() as uow:
                existing = self._look_up(uow, records, tariff, accounts, counters, lock=False)
        # Records of the batch still being written count as rated already.
        existing |= in_flight_ids
        seen = batch.record_ids
        totals, reasons = batch.totals, batch.reasons
        rows, items, rejects = batch.rows, batch.items, batch.rejects
        for item in lines:
            batch.last_line = item.line
            if isinstance(item, SkippedLine):
                batch.skipped += 1
                continue
            batch.records += 1
            if isinstance(item, LineProblem):
                rejects.append(
                    Reject(
                        file_id,
                        item.line,
                        item.reason,
                        item.message,
                        item.raw,
                        now,
                        item.record_id,
                        item.account_id,
                    )
                )
                reasons[item.reason] = reasons.get(item.reason, 0) + 1
                continue
            reason, message = None, ""
            if item.record_id in existing or item.record_id in seen:
                reason = RejectReason.DUPLICATE
                message = f"record {item.record_id} was already rated"
            elif item.event_time > latest:
                reason = RejectReason.FUTURE_EVENT
                message = f"event at {item.event_time.isoformat()} is in the future"
            else:
                try:
                    charge, account, plan = rate_usage(
                        tariff, accounts.get(item.account_id), item, counters
                    )
                except ReckonError as exc:
                    reason, message = exc.reason, exc.message
            if reason is not None:
                rejects.append(
                    Reject(
                        file_id,
                        item.line,
                        reason,
                        message[:1000],
                        item.raw,
                        now,
                        item.record_id,
                        item.account_id,
                    )
                )
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            seen.add(item.record_id)
            row, event_item = stored_rating(
                item,
                charge,
                tariff,
                account,
                plan,
                file_id=file_id,
                line=item.line,
                rated_at=now,
            )
            rows.append(row)
            items.append(event_item)
            totals[charge.currency] = totals.get(charge.currency, 0) + row[_GROSS]
        batch.increments = counters.take_increments()
        return batch

    def _look_up(
        self,
        uow: RatingUnitOfWork,
        records: list[UsageRecord],
        tariff: Tariff,
        accounts: dict[str, Subscriber | None],
        counters: CycleCounters,
        *,
        lock: bool,
    ) -> set[str]:
        """Accounts of the batch into ``accounts``, counters loaded; the rated ids."""
        unknown = {r.account_id for r in records if r.account_id not in accounts}
        if unknown:
            found = find_accounts(uow, unknown)
            for account_id in unknown:
                accounts[account_id] = subscriber(found.get(account_id))
        if lock:
            uow.counters.lock(
                {known.account_id for r in records if (known := accounts.get(r.account_id))}
            )
        existing = uow.usage.existing_record_ids({r.record_id for r in records})
        if tariff.needs_counters:
            counters.load(uow, _cycles(records, accounts, tariff))
        return existing

    def _run_locked(
        self,
        import_file: ImportFile,
        stream: BinaryIO,
        options: ImportOptions,
        tariff: Tariff,
        progress: Progress | None,
    ) -> ImportResult:
        """Import with a catalog whose prices depend on earlier usage of the cycle
        (allowances, packages, tiers, count-limited discounts).

        Each batch is rated and stored in one transaction that first locks its
        accounts' counters and reads them fresh, so a concurrent import for the same
        account waits and then draws only what is left (ADR 0014). Rating and writing
        do not overlap here: the next batch must see what this one drew."""
        file_id = import_file.file_id
        reader = self._reader(import_file, stream, options)
        accounts: dict[str, Subscriber | None] = {}
        header_saved = import_file.header is not None
        try:
            for lines in _batches(iter(reader), self.limits.batch_size):
                if not header_saved and reader.header_text is not None:
                    self._save_header(file_id, reader.header_text)
                    header_saved = True
                if len(accounts) > _ACCOUNT_CACHE_LIMIT:
                    accounts.clear()
                batch = self._rate_and_store(file_id, lines, tariff, accounts)
                if batch.rows:
                    self._metrics.rated.add(len(batch.rows))
                for reason, count in batch.reasons.items():
                    self._metrics.rejects.add(count, {"reason": reason})
                if progress is not None:
                    progress(reader.bytes_read, reader.lines_read)
        except LayoutError as exc:
            return self._finish(file_id, failure=str(exc))
        if not header_saved and reader.header_text is not None:
            self._save_header(file_id, reader.header_text)
        if progress is not None:
            progress(reader.bytes_read, reader.lines_read)
        return self._finish(file_id, failure=None)

    def _rate_and_store(
        self,
        file_id: str,
        lines: list[ParsedLine],
        tariff: Tariff,
        accounts: dict[str, Subscriber | None],
    ) -> _RatedBatch:
        """One batch rated against locked, freshly read counters and stored with them."""
        for attempt in range(1, _LOCKED_ATTEMPTS + 1):
            counters = CycleCounters()  # never cached: another import may have drawn
            try:
                with self._uow_factory() as uow:
                    batch = self._rate_batch(
                        file_id, lines, tariff, accounts, set(), counters, locked_in=uow
                    )
                    self._store_batch(uow, file_id, batch, tariff.revision)
                    uow.commit()
                return batch
            except Aborted:
                # A record id a concurrent import stored first, or the database gave up
                # waiting for a lock: rate the batch again against what is committed now.
                if attempt == _LOCKED_ATTEMPTS:
                    raise
                log.warning("batch of %s conflicted with a concurrent import; retrying", file_id)
        raise AssertionError("unreachable")

    def _settle(
        self,
        file_id: str,
        in_flight: Future[None] | None,
        batch: _RatedBatch | None,
        tariff: Tariff,
        accounts: dict[str, Subscriber | None],
        counters: CycleCounters,
    ) -> None:
        """Wait for the batch being written; rate it again if a concurrent import won."""
        if in_flight is None or batch is None:
            return
        try:
            in_flight.result()
        except Aborted:
            # A concurrent import stored one of these record ids first: rate the batch
            # again against what is committed now (its duplicates become rejects).
            log.warning("batch of %s conflicted with a concurrent import; retrying", file_id)
            counters.undo(batch.increments)
            batch = self._rate_batch(file_id, batch.lines, tariff, accounts, set(), counters)
            self._commit_batch(file_id, batch, tariff.revision)
        if batch.rows:
            self._metrics.rated.add(len(batch.rows))
        for reason, count in batch.reasons.items():
            self._metrics.rejects.add(count, {"reason": reason})

    def _commit_batch(self, file_id: str, batch: _RatedBatch, revision: int) -> None:
        with self._uow_factory() as uow:
            self._store_batch(uow, file_id, batch, revision)
            uow.commit()

    @staticmethod
    def _store_batch(
        uow: RatingUnitOfWork, file_id: str, batch: _RatedBatch, revision: int
    ) -> None:
        uow.usage.add_rated(batch.rows)
        uow.rejects.add_many(batch.rejects)
        uow.counters.increment(batch.increments)
        stored = uow.imports.get(file_id)
        assert stored is not None
        stored.add_outcome(
            records=batch.records,
            rated=len(batch.rows),
            skipped=batch.skipped,
            rejects=batch.reasons,
            totals={c: Decimal(n) / _NANOS for c, n in batch.totals.items()},
            committed_line=batch.last_line,
        )
        # Held until the file ends well: a file that fails publishes nothing (ADR 0042).
        for start in range(0, len(batch.items), EVENT_RECORDS):
            uow.hold(
                file_id, UsageRated(file_id, revision, batch.items[start : start + EVENT_RECORDS])
            )


def _cycles(
    records: list[UsageRecord], accounts: dict[str, Subscriber | None], tariff: Tariff
) -> set[tuple[str, str]]:
    """The counter groups (account, bill cycle) of every record whose account is known."""
    cycles: set[tuple[str, str]] = set()
    for record in records:
        account = accounts.get(record.account_id)
        if account is not None:
            cycles |= counter_cycles(tariff, account, record.event_time)
    return cycles


def _batches(lines: Iterator[ParsedLine], size: int) -> Iterator[list[ParsedLine]]:
    batch: list[ParsedLine] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
