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

The steps live in one module each: intake here (``UsageImporter.import_path``:
identify the file, resume or refuse a duplicate), record processing in
``import_batches``, the outcome (threshold, held ratings, events) in
``import_outcome``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Final

from services.common.clock import Clock
from services.common.errors import InvalidArgument
from services.common.ids import new_id
from services.common.telemetry import tracer
from services.rating.service_layer.import_batches import EVENT_RECORDS, BatchRating, Progress
from services.rating.service_layer.import_outcome import (
    ImportLimits,
    ImportOutcome,
    ImportResult,
    RatingMetrics,
    UowFactory,
    over_threshold,
)
from services.rating.service_layer.model import ImportFile, ImportStatus
from services.rating.service_layer.tariffs import Tariff, TariffCache
from services.rating.service_layer.usage_formats import ImportOptions

log = logging.getLogger(__name__)

_READ_BUFFER: Final = 4 * 1024 * 1024


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def options_fingerprint(checksum: str, options: ImportOptions) -> str:
    return hashlib.sha256(f"{checksum}\0{options.to_json()}".encode()).hexdigest()


class UsageImporter(BatchRating):
    """Imports usage files: intake here, record processing and the outcome in its bases."""

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


def _validate(options: ImportOptions) -> InvalidArgument | None:
    from services.common.errors import Violations

    violations = Violations("options")
    options.validate(violations)
    return InvalidArgument(list(violations.items)) if violations else None


__all__ = [
    "EVENT_RECORDS",
    "ImportLimits",
    "ImportOutcome",
    "ImportResult",
    "Progress",
    "RatingMetrics",
    "UowFactory",
    "UsageImporter",
    "file_checksum",
    "options_fingerprint",
    "over_threshold",
]
