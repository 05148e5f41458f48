"""Re-processing rejects (RAT-7) once their cause is fixed.

An open reject is read again from its stored raw record with the options of
the file it came from (and the file's header line, for CSV with a header), then
checked and rated exactly like a record of a new file. Rated: the reject becomes
``reprocessed`` and the rated row points at the original file and line. A
duplicate of a record rated since: ``discarded``. Still failing: it stays open
with its new reason and one more attempt counted. Works in pages, one
transaction each, so a large backlog neither holds long locks nor memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.clock import Clock
from services.common.errors import ReckonError
from services.rating.service_layer.cycles import CycleCounters
from services.rating.service_layer.events import UsageRated
from services.rating.service_layer.held import file_threshold, release_held_file
from services.rating.service_layer.imports import ImportLimits, RatingMetrics, over_threshold
from services.rating.service_layer.model import ImportFile, RejectStatus
from services.rating.service_layer.pricing import (
    counter_cycles,
    find_accounts,
    rate_usage,
    stored_rating,
    subscriber,
)
from services.rating.service_layer.tariffs import TariffCache
from services.rating.service_layer.unit_of_work import (
    RatedTuple,
    RatingUnitOfWork,
    RejectFilter,
)
from services.rating.service_layer.usage_formats import (
    ImportOptions,
    LineProblem,
    RejectReason,
    SkippedLine,
    UsageRecord,
    parse_stored_record,
)

_PAGE = 500


@dataclass
class ReprocessOutcome:
    attempted: int = 0
    rated: int = 0
    discarded: int = 0
    still_rejected: int = 0
    remaining_by_reason: dict[str, int] = field(default_factory=dict)


def reprocess_rejects(
    uow_factory: Callable[[], RatingUnitOfWork],
    tariffs: TariffCache,
    clock: Clock,
    limits: ImportLimits,
    metrics: RatingMetrics,
    query: RejectFilter,
) -> ReprocessOutcome:
    tariff = tariffs.current()
    outcome = ReprocessOutcome()
    files: dict[str, ImportFile | None] = {}
    after_id: int | None = None
    open_only = RejectFilter(query.file_id, query.reason, RejectStatus.OPEN, query.reject_ids)
    touched_held: set[str] = set()
    while True:
        now = clock.now()
        latest = now + limits.future_tolerance
        with uow_factory() as uow:
            page = uow.rejects.list(open_only, after_id, _PAGE)
            if not page:
                break
            after_id = page[-1].reject_id
            for file_id in {r.file_id for r in page} - files.keys():
                found = uow.imports.get(file_id)
                files[file_id] = found
            parsed: list[tuple[Any, Any]] = []
            for reject in page:
                source = files.get(reject.file_id)
                item = None
                if source is not None:
                    item = parse_stored_record(
                        reject.raw_record,
                        reject.line,
                        ImportOptions.from_json(source.options),
                        source.header,
                        max_line_bytes=limits.max_line_bytes,
                        max_field_chars=limits.max_field_chars,
                    )
                parsed.append((reject, item))
            records = [item for _, item in parsed if isinstance(item, UsageRecord)]
            accounts = find_accounts(uow, {r.account_id for r in records})
            existing = uow.usage.existing_record_ids({r.record_id for r in records})
            subscribers = {key: subscriber(value) for key, value in accounts.items()}
            counters = CycleCounters()
            if tariff.needs_counters:
                # Drawn under the accounts' lock, as an import draws (ADR 0014).
                uow.counters.lock(
                    {known.account_id for r in records if (known := subscribers.get(r.account_id))}
                )
                cycles: set[tuple[str, str]] = set()
                for r in records:
                    if (known := subscribers.get(r.account_id)) is not None:
                        cycles |= counter_cycles(tariff, known, r.event_time)
                counters.load(uow, cycles)
            rows: list[RatedTuple] = []
            items: list[dict[str, Any]] = []
            item_files: list[str] = []
            held = {f for f, found in files.items() if found is not None and found.held}
            touched_held |= held & {r.file_id for r in page}
            for reject, item in parsed:
                outcome.attempted += 1
                reject.attempts += 1
                if isinstance(item, SkippedLine):
                    reject.status, reject.resolved_at = RejectStatus.DISCARDED, now
                    outcome.discarded += 1
                    continue
                if not isinstance(item, UsageRecord):
                    problem = item if isinstance(item, LineProblem) else None
                    reject.reason = problem.reason if problem else RejectReason.MALFORMED_LINE
                    reject.message = problem.message if problem else "record cannot be read again"
                    outcome.still_rejected += 1
                    continue
                if item.record_id in existing:
                    reject.status, reject.resolved_at = RejectStatus.DISCARDED, now
                    reject.message = f"record {item.record_id} was rated since"
                    outcome.discarded += 1
                    continue
                if item.event_time > latest:
                    reject.reason = RejectReason.FUTURE_EVENT
                    reject.message = f"event at {item.event_time.isoformat()} is in the future"
                    outcome.still_rejected += 1
                    continue
                try:
                    charge, account, plan = rate_usage(
                        tariff, subscribers.get(item.account_id), item, counters
                    )
                except ReckonError as exc:
                    reject.reason, reject.message = exc.reason, exc.message[:1000]
                    outcome.still_rejected += 1
                    continue
                existing.add(item.record_id)
                row, event_item = stored_rating(
                    item,
                    charge,
                    tariff,
                    account,
                    plan,
                    file_id=reject.file_id,
                    line=reject.line,
                    rated_at=now,
                )
                rows.append(row)
                items.append(event_item)
                item_files.append(reject.file_id)
                reject.status, reject.resolved_at = RejectStatus.REPROCESSED, now
                outcome.rated += 1
            uow.usage.add_rated(rows)
            uow.counters.increment(counters.take_increments())
            for reject, _ in parsed:
                uow.rejects.update(reject)
            # Ratings of a held (failed) file stay held with the rest of it (ADR 0042).
            published = [i for i, f in zip(items, item_files, strict=True) if f not in held]
            for file_id in held & set(item_files):
                mine = [i for i, f in zip(items, item_files, strict=True) if f == file_id]
                uow.hold(file_id, UsageRated(file_id, tariff.revision, mine))
            if published:
                uow.publish(
                    UsageRated(
                        page[0].file_id if len(files) == 1 else "reprocess",
                        tariff.revision,
                        published,
                    )
                )
            uow.commit()
        if rows:
            metrics.rated.add(len(rows))
    with uow_factory() as uow:
        outcome.remaining_by_reason = uow.rejects.counts(open_only)
    for file_id in sorted(touched_held):
        release_if_within_threshold(uow_factory, clock, limits, file_id)
    return outcome


def release_if_within_threshold(
    uow_factory: Callable[[], RatingUnitOfWork], clock: Clock, limits: ImportLimits, file_id: str
) -> bool:
    """Release a held file once re-processing brought its open rejects within its threshold."""
    with uow_factory() as uow:
        stored = uow.imports.get(file_id)
        if stored is None or not stored.held:
            return False
        still_open = sum(uow.rejects.counts(RejectFilter(file_id, "", RejectStatus.OPEN)).values())
        considered = stored.rated + stored.rejected
        threshold = file_threshold(stored, limits)
        if over_threshold(still_open, considered, threshold, limits.reject_threshold_min_records):
            return False
        release_held_file(uow, clock, stored, reason="reprocessed")
        uow.commit()
        return True
