"""How an import ends: limits, results, metrics, the reject threshold, finishing a file.

``ImportOutcome._finish`` closes a file: it fails loudly (status ``failed``) when
more than the threshold percentage of its records were rejected (``over_threshold``),
releases the ratings held during the import when it ended well, or keeps them held
until an operator releases them (ADR 0042), and publishes ``UsageImported``,
``UsageRejected`` and ``UsageImportFailed``. Part of ``imports.UsageImporter``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from opentelemetry.metrics import Counter

from services.common.clock import Clock
from services.common.telemetry import meter
from services.rating.service_layer.events import UsageImported, UsageImportFailed, UsageRejected
from services.rating.service_layer.model import ImportFile, ImportStatus
from services.rating.service_layer.unit_of_work import RatingUnitOfWork
from services.rating.service_layer.usage_formats import ImportOptions

log = logging.getLogger(__name__)

UowFactory = Callable[[], RatingUnitOfWork]


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


class ImportOutcome:
    """Finishing an import; the base of ``UsageImporter``, which sets the state."""

    _uow_factory: UowFactory
    _clock: Clock
    limits: ImportLimits
    _metrics: RatingMetrics

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
