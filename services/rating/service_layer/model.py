"""What the rating service keeps besides the tariff itself: catalog revisions, the local
view of accounts, imported files, rejects, rated usage and re-rating runs.

These are plain classes (mapped imperatively in ``adapters/orm.py``); the pure
tariff rules live in ``services.rating.domain``. Rating owns no accounts: it keeps
a *view* of the accounts it must rate, built from the accounts service's events
(``AccountCreated``, ``SubscriptionChanged`` ...), so an import never calls another
service per record.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


@dataclass(eq=False)
class CatalogRevision:
    """One state of the catalog: a document (as written) plus a destination prefix set."""

    revision: int | None
    checksum: str
    document: str
    document_format: str
    source_name: str
    prefix_set_id: str | None
    plan_count: int
    prefix_count: int
    applied_at: datetime


@dataclass(eq=False)
class PrefixSet:
    """A destination prefix table imported from CSV; rows live in ``destination_prefixes``."""

    set_id: str
    file_name: str
    checksum: str
    prefix_count: int
    destination_count: int
    created_at: datetime


@dataclass(eq=False)
class PlanAssignment:
    """From ``effective_from`` on, the account's usage is rated with ``plan_code``."""

    account_id: str
    plan_code: str
    effective_from: datetime
    subscription_id: str = ""
    id: int | None = None


@dataclass(eq=False)
class KnownAccount:
    """Rating's view of a billing account, kept from the accounts service's events."""

    account_id: str
    customer_id: str
    currency: str
    time_zone: str
    tax_region: str
    group_code: str
    status: str
    updated_at: datetime
    bill_cycle_day: int = 1
    assignments: list[PlanAssignment] = field(default_factory=list)
    # The customer's external reference (accounts' ``customer_external_ref``): price
    # packages may name the customer as ``ext:<ref>`` (issue 9 item 12).
    customer_ref: str = ""

    def plan_at(self, instant: datetime) -> str | None:
        """The plan in force at ``instant``: the latest assignment that started by then."""
        ordered = sorted(self.assignments, key=lambda a: a.effective_from)
        starts = [a.effective_from for a in ordered]
        index = bisect_right(starts, instant) - 1
        if index < 0:
            return None
        code = ordered[index].plan_code
        return code or None  # an empty code records a cancelled subscription


class ImportStatus(StrEnum):
    IMPORTING = "importing"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(eq=False)
class ImportFile:
    """One usage file and what became of its records."""

    file_id: str
    file_name: str
    checksum: str
    status: str
    options: str  # ImportOptions as JSON, so rejects can be re-read later
    started_at: datetime
    header: str | None = None
    failed_loudly: bool = False
    failure_message: str = ""
    records: int = 0
    rated: int = 0
    rejected: int = 0
    skipped: int = 0
    # Last line whose outcome is committed: an interrupted import resumes after it.
    committed_line: int = 0
    rejects_by_reason: str = "{}"
    rated_totals: str = "{}"
    finished_at: datetime | None = None
    catalog_revision: int | None = None
    request_id: str = ""
    # A failed file's ratings are held back: no UsageRated went out, so nothing was
    # charged, until an operator releases it (or re-processing brings it under the
    # threshold). ``released_at``: when its held events were published.
    held: bool = False
    released_at: datetime | None = None

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = json.loads(self.rejects_by_reason or "{}")
        return counts

    def totals(self) -> dict[str, Decimal]:
        raw: dict[str, str] = json.loads(self.rated_totals or "{}")
        return {currency: Decimal(amount) for currency, amount in raw.items()}

    def add_outcome(
        self,
        *,
        records: int,
        rated: int,
        skipped: int,
        rejects: dict[str, int],
        totals: dict[str, Decimal],
        committed_line: int,
    ) -> None:
        self.records += records
        self.rated += rated
        self.skipped += skipped
        self.rejected += sum(rejects.values())
        counts = self.reason_counts()
        for reason, count in rejects.items():
            counts[reason] = counts.get(reason, 0) + count
        self.rejects_by_reason = json.dumps(counts, sort_keys=True)
        sums = self.totals()
        for currency, amount in totals.items():
            sums[currency] = sums.get(currency, Decimal(0)) + amount
        self.rated_totals = json.dumps({c: str(a) for c, a in sums.items()}, sort_keys=True)
        self.committed_line = max(self.committed_line, committed_line)


class RejectStatus(StrEnum):
    OPEN = "open"
    REPROCESSED = "reprocessed"
    DISCARDED = "discarded"


@dataclass(eq=False)
class Reject:
    """A record that could not be rated, kept with why and where it came from (RAT-7)."""

    file_id: str
    line: int
    reason: str
    message: str
    raw_record: str
    created_at: datetime
    record_id: str = ""
    account_id: str = ""
    status: str = RejectStatus.OPEN
    attempts: int = 1
    resolved_at: datetime | None = None
    reject_id: int | None = None


@dataclass(eq=False)
class RerateRun:
    """One re-rating of an account's period, with old and new totals per currency."""

    rerate_id: str
    account_id: str
    period_start: datetime
    period_end: datetime
    catalog_revision: int
    records: int
    changed: int
    failed: int
    totals: str  # {currency: {"old": str, "new": str}}
    created_at: datetime
    request_id: str = ""
