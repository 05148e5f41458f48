"""What invoicing knows of customers, accounts and bill runs (learnt from accounts' events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


@dataclass(frozen=True)
class CustomerFacts:
    customer_id: str
    display_name: str
    email: str
    language_code: str
    reseller_id: str
    group_id: str
    # The customer's VAT identifier (BT-48), e.g. BE0123456789; "" for consumers. Reverse
    # charge (AE) and intra-community supply (K) invoices need it (BR-AE-02, BR-IC-02).
    vat_id: str = ""


@dataclass(frozen=True)
class AccountFacts:
    account_id: str
    customer_id: str
    currency: str
    time_zone: str
    bill_cycle_day: int
    tax_region: str
    payment_terms_days: int
    payment_mode: str
    parent_account_id: str
    state: str
    reseller_id: str
    group_id: str
    create_time: datetime
    language_code: str = "en"
    # The customer's current VAT identifier (``CustomerFacts.vat_id``), loaded with the
    # account so a bill run can refuse AE/K invoices without it at no extra statement.
    customer_vat_id: str = ""


class BillRunState(StrEnum):
    RUNNING = "RUNNING"
    DRAFTED = "DRAFTED"
    ACCEPTING = "ACCEPTING"
    ACCEPTED = "ACCEPTED"
    CANCELLED = "CANCELLED"


class ItemStatus(StrEnum):
    PENDING = "PENDING"
    DRAFTED = "DRAFTED"
    FINALIZED = "FINALIZED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class BillRunScope:
    bill_cycle_day: int = 0
    reseller_id: str = ""
    group_id: str = ""
    account_id: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.bill_cycle_day or self.reseller_id or self.group_id or self.account_id)


@dataclass(frozen=True)
class BillRunError:
    account_id: str
    reason: str
    message: str


@dataclass
class BillRun:
    bill_run_id: str
    state: BillRunState
    scope: BillRunScope
    billing_date: date
    auto_accept: bool
    scheduled: bool
    create_time: datetime
    update_time: datetime
    complete_time: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[BillRunError] = field(default_factory=list)
    # Sum of the drafts' gross totals per currency (decimal strings).
    totals: dict[str, str] = field(default_factory=dict)

    def count(self, status: ItemStatus) -> int:
        return self.counts.get(status.value, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.total - self.count(ItemStatus.PENDING)
