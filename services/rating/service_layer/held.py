"""Held imports (issue 9 item 7, ADR 0042): a failed file charges nothing until released.

An import holds its ``UsageRated`` events (``RatingUnitOfWork.hold``) while it
runs. A file that ends well releases them at once; a file that fails loudly
keeps them held, and its rated rows are left out of rated usage (listing,
re-rating), so nothing is published, debited or invoiced. The operator then
either fixes the cause and re-processes the file's rejects (the file is
released by itself once its open rejects are within its threshold), or releases
it as it is (``ReleaseImportFile``, ``reckon usage release``).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound
from services.rating.service_layer.events import UsageImportReleased
from services.rating.service_layer.imports import ImportLimits
from services.rating.service_layer.model import ImportFile
from services.rating.service_layer.unit_of_work import RatingUnitOfWork
from services.rating.service_layer.usage_formats import ImportOptions

UowFactory = Callable[[], RatingUnitOfWork]


def file_threshold(stored: ImportFile, limits: ImportLimits) -> Decimal:
    """The reject threshold (percent) a file was imported with."""
    options = ImportOptions.from_json(stored.options)
    if options.reject_threshold_percent is not None:
        return options.reject_threshold_percent
    return limits.reject_threshold_percent


def release_held_file(
    uow: RatingUnitOfWork, clock: Clock, stored: ImportFile, *, reason: str
) -> int:
    """Publish a held file's events with ``uow``'s commit; returns how many were held."""
    count = uow.release_held(stored.file_id)
    stored.held = False
    stored.released_at = clock.now()
    uow.publish(UsageImportReleased(stored.file_id, stored.file_name, stored.rated, reason))
    return count


def release_import(
    uow_factory: UowFactory, clock: Clock, file_id: str, *, request_id: str = ""
) -> ImportFile:
    """An operator releases a held file as it is: its rated records become usage."""
    with uow_factory() as uow:
        replayed = uow.replayed_resource("release_import", request_id, file_id)
        stored = uow.imports.get(replayed or file_id)
        if stored is None:
            raise NotFound(f"no import file {file_id!r}", reason="UNKNOWN_FILE")
        if replayed is not None:
            return stored
        if not stored.held:
            raise FailedPrecondition(
                f"import file {file_id} is not held (status {stored.status}): only a failed "
                "file with rated records is held, and only until it is released",
                reason="IMPORT_NOT_HELD",
            )
        release_held_file(uow, clock, stored, reason="operator")
        uow.remember_request("release_import", request_id, file_id, file_id)
        uow.commit()
        return stored


__all__ = ["file_threshold", "release_held_file", "release_import"]
