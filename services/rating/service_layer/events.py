"""Events the rating service publishes on ``reckon:events:rating``.

``UsageRated`` carries up to 1,000 records of one stored batch, not one record:
a million-record file then costs 1,000 outbox rows and stream entries instead of
a million (per-record events would cost more than rating the records).
Consumers (charging, invoicing) iterate ``records``; each item has
``record_id``, ``account_id``, ``service``, ``quantity``, ``unit``,
``amount`` / ``net`` / ``tax`` (``{"amount": "1.23", "currency": "EUR"}``, exact
decimal strings), ``event_time`` (ISO 8601 UTC), ``plan_code``, ``plan_version``
and ``destination``. A record id appears in at most one ``UsageRated``
(de-duplication happens before); a later correction comes as ``UsageRerated``
with the old and new amounts.

Alerts (RAT-7): ``UsageRejected`` when a file had rejects (counts per reason),
``UsageImportFailed`` when a file failed loudly (reject threshold exceeded or
unreadable), and ``UsageImported`` when a file finished, whatever the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from services.common.events import DomainEvent


@dataclass(frozen=True)
class UsageRated(DomainEvent):
    event_type: ClassVar[str] = "UsageRated"
    aggregate_field: ClassVar[str] = "file_id"

    file_id: str
    catalog_revision: int
    # Already JSON-ready (strings and ints): building them is part of the batch.
    records: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        # The generic payload() walks every value; this one is built ready for JSON.
        return {
            "file_id": self.file_id,
            "catalog_revision": self.catalog_revision,
            "count": len(self.records),
            "records": self.records,
        }


@dataclass(frozen=True)
class UsageRerated(DomainEvent):
    event_type: ClassVar[str] = "UsageRerated"
    aggregate_field: ClassVar[str] = "account_id"

    rerate_id: str
    account_id: str
    period_start: str
    period_end: str
    catalog_revision: int
    # {currency: {"old_total", "new_total", "difference"}} as decimal strings.
    totals: dict[str, dict[str, str]]
    # Changed records: record_id, old {amount, currency}, new {amount, currency}.
    corrections: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {
            "rerate_id": self.rerate_id,
            "account_id": self.account_id,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "catalog_revision": self.catalog_revision,
            "totals": self.totals,
            "corrections": self.corrections,
        }


@dataclass(frozen=True)
class UsageImported(DomainEvent):
    event_type: ClassVar[str] = "UsageImported"
    aggregate_field: ClassVar[str] = "file_id"

    file_id: str
    file_name: str
    status: str
    records: int
    rated: int
    rejected: int
    skipped: int
    rated_totals: dict[str, str]


@dataclass(frozen=True)
class UsageRejected(DomainEvent):
    """An alert: records of a file were rejected (kept, listed with ``ListRejects``)."""

    event_type: ClassVar[str] = "UsageRejected"
    aggregate_field: ClassVar[str] = "file_id"

    file_id: str
    file_name: str
    rejected: int
    records: int
    by_reason: dict[str, int]


@dataclass(frozen=True)
class UsageImportFailed(DomainEvent):
    """An alert: a file failed loudly and needs an operator."""

    event_type: ClassVar[str] = "UsageImportFailed"
    aggregate_field: ClassVar[str] = "file_id"

    file_id: str
    file_name: str
    message: str
    rejected: int
    records: int
    threshold_percent: str
    # Rated records held back (not published, not charged) until the file is released.
    held_records: int = 0


@dataclass(frozen=True)
class UsageImportReleased(DomainEvent):
    """A held (failed) file was released: its held ``UsageRated`` events follow now."""

    event_type: ClassVar[str] = "UsageImportReleased"
    aggregate_field: ClassVar[str] = "file_id"

    file_id: str
    file_name: str
    rated: int
    reason: str  # "operator" or "reprocessed"


@dataclass(frozen=True)
class CatalogApplied(DomainEvent):
    """A new catalog revision is in force; accounts refuses plan codes not in ``plan_codes``."""

    event_type: ClassVar[str] = "CatalogApplied"
    aggregate_field: ClassVar[str] = "revision"

    revision: int
    plan_codes: list[str]
    prefix_count: int
