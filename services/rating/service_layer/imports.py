"""Usage import (RAT-6, RAT-7): a file of CDR/EDR records in, rated usage and rejects out.

The pipeline, for one file:

1. **Identify** the file by the SHA-256 of its bytes. A file already imported is
   not rated again: the earlier outcome is returned (``duplicate_of``). A file
   whose import was interrupted (status ``importing``) resumes after the last
   line whose outcome was committed.
2. **Read** it with ``UsageFileReader`` in constant memory, one line at a time.
3. In **batches** (``batch_size`` lines, one transaction each): look the batch's
   accounts up in rating's account view, find record ids that already have a
   rating (de-duplication across files, through the database, so memory does not
   grow with the file), refuse events in the future, rate each record with the
   tariff in force at its time, then store rated rows (COPY on PostgreSQL),
   rejects with reason, file and line, the file's counters and one ``UsageRated``
   event for the batch, all in the same commit. A crash loses at most the batch
   in flight, which the resumed import rates again. With a catalog whose prices
   depend on earlier usage of the bill cycle (allowances, tiers, count-limited
   discounts), each batch is rated and stored in one transaction that first locks
   its accounts' counters (``_run_locked``, ADR 0014).
4. **Finish**: the file fails loudly (status ``failed``) when more than the
   threshold percentage of its records were rejected; events ``UsageImported``,
   ``UsageRejected`` (alert, when any reject) and ``UsageImportFailed`` (alert)
   are published, and the ``reckon.rating.rejects`` counter counts rejects by reason.

Every record ends up exactly once as rated, rejected or skipped (e.g. unanswered
calls of a switch CDR); none is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final

from opentelemetry.metrics import Counter

from services.common.clock import Clock
from services.common.errors import Aborted, InvalidArgument, ReckonError
from services.common.ids import new_id
from services.common.telemetry import meter, tracer
from services.rating.service_layer.cycles import CycleCounters
from services.rating.service_layer.events import (
    UsageImported,
    UsageImportFailed,
    UsageRated,
    UsageRejected,
)
from services.rating.service_layer.model import (
    ImportFile,
    ImportStatus,
    Reject,
)
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

UowFactory = Callable[[], RatingUnitOfWork]
# Called after each committed batch with (bytes read so far, lines read so far).
Progress = Callable[[int, int], None]

# The account view cache of one import is dropped when it grows past this, so a file
# touching millions of accounts still runs in bounded memory.
_ACCOUNT_CACHE_LIMIT: Final = 100_000
_NANOS: Final = Decimal(10) ** 9
_READ_BUFFER: Final = 4 * 1024 * 1024
# Records per UsageRated event: a stream entry stays a few hundred KB, so consumers
# reading 100 entries at a time hold tens of MB, not hundreds.
EVENT_RECORDS: Final = 1000
_GROSS: Final = RATED_COLUMNS.index("amount_nanos")
# Tries of a batch whose accounts' counters are locked (conflicts are rare and brief).
_LOCKED_ATTEMPTS: Final = 5


@dataclass(frozen=True)
class ImportLimits:
    batch_size: int = 5000
    max_line_bytes: int = 16_384
    max_field_chars: int = 1024
    future_tolerance: timedelta = timedelta(minutes=5)
    reject_threshold_percent: Decimal = Decimal(5)
    # Below this many records a percentage says little (1 of 6 is 17%): such a small
    # file fails only when every record was rejected.
    reject_threshold_min_records: int = 20


@dataclass
class ImportResult:
    file: ImportFile
    duplicate_of: str = ""

    @property
    def failed(self) -> bool:
        return self.file.status == ImportStatus.FAILED


class RatingMetrics:
    """The rating service's counters (OpenTelemetry), created once per process."""

    def __init__(self) -> None:
        instruments = meter()
        self.rejects: Counter = instruments.create_counter(
            "reckon.rating.rejects",
            unit="{record}",
            description="usage records rejected, by reason",
        )
        self.rated: Counter = instruments.create_counter(
            "reckon.rating.rated", unit="{record}", description="usage records rated and stored"
        )
        self.files: Counter = instruments.create_counter(
            "reckon.rating.import.files",
            unit="{file}",
            description="usage files imported, by status",
        )


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def options_fingerprint(checksum: str, options: ImportOptions) -> str:
    return hashlib.sha256(f"{checksum}\0{options.to_json()}".encode()).hexdigest()


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


class UsageImporter:
    def __init__(
        self,
        uow_factory: UowFactory,
        tariffs: TariffCache,
        clock: Clock,
        limits: ImportLimits,
        metrics: RatingMetrics,
    ) -> None:
        self._uow_factory = uow_factory
        self._tariffs = tariffs
        self._clock = clock
        self.limits = limits
        self._metrics = metrics

    # -- entry points ---------------------------------------------------------------------

    def import_path(
        self,
        path: Path,
        file_name: str,
        options: ImportOptions,
        *,
        request_id: str = "",
        checksum: str | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Import one file from disk (an upload spooled by the servicer, or a dropped file)."""
        violations_error = _validate(options)
        if violations_error is not None:
            raise violations_error
        checksum = checksum or file_checksum(path)
        with tracer().start_as_current_span(
            "reckon.rating.import", attributes={"reckon.import.file": file_name[:255]}
        ):
            tariff = self._tariffs.current()
            result = self._begin(file_name, checksum, options, request_id, tariff)
            if result.duplicate_of or result.file.status != ImportStatus.IMPORTING:
                return result
            # A large buffer: each refill releases the GIL, and the writer thread may
            # then keep it for a whole switch interval; few refills, few such stalls.
            with path.open("rb", buffering=_READ_BUFFER) as stream:
                return self._run(result.file, stream, options, tariff, progress)

    # -- steps ----------------------------------------------------------------------------

    def _begin(
        self,
        file_name: str,
        checksum: str,
        options: ImportOptions,
        request_id: str,
        tariff: Tariff,
    ) -> ImportResult:
        fingerprint = options_fingerprint(checksum, options)
        with self._uow_factory() as uow:
            replayed = uow.replayed_resource("import_usage", request_id, fingerprint)
            if replayed is not None:
                earlier = uow.imports.get(replayed)
                if earlier is not None and earlier.status != ImportStatus.IMPORTING:
                    return ImportResult(earlier, duplicate_of=earlier.file_id)
            for earlier in reversed(uow.imports.by_checksum(checksum)):
                if earlier.status == ImportStatus.IMPORTING:
                    log.info(
                        "resuming import %s after line %s", earlier.file_id, earlier.committed_line
                    )
                    return ImportResult(earlier)
                if earlier.status == ImportStatus.COMPLETED or earlier.records > 0:
                    return ImportResult(earlier, duplicate_of=earlier.file_id)
            import_file = ImportFile(
                file_id=new_id("imp"),
                file_name=file_name[:255],
                checksum=checksum,
                status=ImportStatus.IMPORTING,
                options=options.to_json(),
                started_at=self._clock.now(),
                catalog_revision=tariff.revision,
                request_id=request_id,
            )
            uow.imports.add(import_file)
            uow.remember_request("import_usage", request_id, fingerprint, import_file.file_id)
            uow.commit()
        return ImportResult(import_file)

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

    def over_threshold(self, rejected: int, considered: int, threshold: Decimal) -> bool:
        return over_threshold(
            rejected, considered, threshold, self.limits.reject_threshold_min_records
        )

    def _finish(self, file_id: str, failure: str | None) -> ImportResult:
        with self._uow_factory() as uow:
            stored = uow.imports.get(file_id)
            assert stored is not None
            options = ImportOptions.from_json(stored.options)
            threshold = (
                options.reject_threshold_percent
                if options.reject_threshold_percent is not None
                else self.limits.reject_threshold_percent
            )
            considered = stored.rated + stored.rejected
            if failure is None and self.over_threshold(stored.rejected, considered, threshold):
                failure = (
                    f"{stored.rejected} of {considered} records rejected "
                    f"({_percent(stored.rejected, considered)}%), above the threshold of "
                    f"{threshold}%"
                )
            stored.status = ImportStatus.FAILED if failure else ImportStatus.COMPLETED
            stored.failed_loudly = failure is not None
            stored.failure_message = failure or ""
            stored.finished_at = self._clock.now()
            if failure is None:
                uow.release_held(file_id)  # the file ended well: its ratings are usage now
                stored.held = False
            else:  # nothing published, nothing charged, until an operator releases it
                stored.held = uow.held_count(file_id) > 0
            totals = {c: str(a) for c, a in stored.totals().items()}
            uow.publish(
                UsageImported(
                    stored.file_id,
                    stored.file_name,
                    stored.status,
                    stored.records,
                    stored.rated,
                    stored.rejected,
                    stored.skipped,
                    totals,
                )
            )
            if stored.rejected:
                uow.publish(
                    UsageRejected(
                        stored.file_id,
                        stored.file_name,
                        stored.rejected,
                        stored.records,
                        stored.reason_counts(),
                    )
                )
            if failure is not None:
                log.error("usage file %s (%s) failed: %s", stored.file_name, file_id, failure)
                uow.publish(
                    UsageImportFailed(
                        stored.file_id,
                        stored.file_name,
                        failure,
                        stored.rejected,
                        stored.records,
                        str(threshold),
                        stored.rated if stored.held else 0,
                    )
                )
            uow.commit()
            self._metrics.files.add(1, {"status": str(stored.status)})
            return ImportResult(stored)


def over_threshold(rejected: int, considered: int, threshold: Decimal, min_records: int) -> bool:
    """Whether ``rejected`` of ``considered`` records fail a file: above ``threshold``
    percent, and either enough records to judge (``min_records``) or all rejected."""
    if not considered:
        return False
    too_many = Decimal(rejected) * 100 > threshold * considered
    return too_many and (considered >= min_records or rejected == considered)


def _percent(part: int, whole: int) -> str:
    return str((Decimal(part) * 100 / whole).quantize(Decimal("0.1")))


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


def _validate(options: ImportOptions) -> InvalidArgument | None:
    from services.common.errors import Violations

    violations = Violations("options")
    options.validate(violations)
    return InvalidArgument(list(violations.items)) if violations else None
