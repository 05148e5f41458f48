"""Invoices, their lines and lifecycle, credit notes, disputes and pending items.

Lifecycle (DOMAIN.md INV-4): DRAFT -> OPEN (finalised: numbered, immutable) ->
PAID | PARTIALLY_PAID | VOID | UNCOLLECTIBLE. An open invoice is corrected only
by a credit note, never edited. Every refused transition raises
``FailedPrecondition`` with a reason clients can branch on.

Amounts of an invoice after finalisation::

    amount_due = total_gross - credit_applied - amount_paid - credit_note_applied

``credit_note_applied`` is the part of the credit notes that reduced what was
due; the rest of a credit note (the invoice had less due) went to account credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from services.common.errors import FailedPrecondition
from services.common.money import Money

from .arithmetic import TaxedAmount, Totals, VatBreakdown, totals


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    VOID = "VOID"
    UNCOLLECTIBLE = "UNCOLLECTIBLE"


class LineKind(StrEnum):
    RECURRING = "RECURRING"
    PRORATION = "PRORATION"
    USAGE = "USAGE"
    ONE_TIME = "ONE_TIME"
    PENDING_ITEM = "PENDING_ITEM"
    CORRECTION = "CORRECTION"
    LATE_FEE = "LATE_FEE"
    TOP_UP = "TOP_UP"


class DisputeStatus(StrEnum):
    OPEN = "OPEN"
    WON = "WON"
    LOST = "LOST"


INVALID_STATUS = "INVALID_INVOICE_STATUS"
SETTLED = (InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    kind: LineKind
    description: str
    service: str
    quantity: Decimal
    unit_code: str
    unit_price: Money
    net_amount: Money
    tax_category: str
    tax_rate: Decimal
    allowance: Money | None = None
    destination_group: str = ""
    time_band: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None
    subscription_id: str = ""
    plan_code: str = ""
    source_account_id: str = ""
    detail_count: int = 0
    # Exact sum of the rated amounts of a usage line, before the line was rounded.
    unrounded_amount: Decimal | None = None

    def taxed(self) -> TaxedAmount:
        return TaxedAmount(self.net_amount, self.tax_category, self.tax_rate)


@dataclass(frozen=True)
class HistoryEntry:
    from_status: InvoiceStatus | None
    to_status: InvoiceStatus
    action: str
    detail: str
    at: datetime


@dataclass
class Invoice:
    invoice_id: str
    account_id: str
    customer_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    lines: list[InvoiceLine]
    language_code: str
    reseller_id: str
    group_id: str
    tax_region: str
    bill_cycle_day: int
    payment_terms_days: int
    time_zone: str
    create_time: datetime
    bill_run_id: str = ""
    status: InvoiceStatus = InvoiceStatus.DRAFT
    number: str = ""
    series: str = ""
    issue_date: date | None = None
    due_date: date | None = None
    finalize_time: datetime | None = None
    update_time: datetime | None = None
    total_net: Money | None = None
    total_tax: Money | None = None
    total_gross: Money | None = None
    breakdown: tuple[VatBreakdown, ...] = ()
    amount_paid: Money | None = None
    credit_applied: Money | None = None
    credited_amount: Money | None = None
    credit_note_applied: Money | None = None
    disputed_amount: Money | None = None
    dunning_level: int = 0
    version: int = 0
    # What happened in this unit of work; the repository stores it.
    new_history: list[HistoryEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        zero = Money.zero(self.currency)
        for name in ("amount_paid", "credit_applied", "credited_amount", "credit_note_applied"):
            if getattr(self, name) is None:
                setattr(self, name, zero)
        if self.disputed_amount is None:
            self.disputed_amount = zero
        if self.total_gross is None:
            self.recompute()
        if self.update_time is None:
            self.update_time = self.create_time

    # -- amounts ---------------------------------------------------------------------
    def recompute(self) -> Totals:
        result = totals([line.taxed() for line in self.lines], self.currency)
        self.total_net, self.total_tax, self.total_gross = result.net, result.tax, result.gross
        self.breakdown = result.breakdown
        return result

    def _m(self, value: Money | None) -> Money:
        return value if value is not None else Money.zero(self.currency)

    @property
    def gross(self) -> Money:
        return self._m(self.total_gross)

    @property
    def amount_due(self) -> Money:
        if self.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
            return Money.zero(self.currency) if self.status != InvoiceStatus.DRAFT else self.gross
        due = (
            self.gross
            - self._m(self.credit_applied)
            - self._m(self.amount_paid)
            - self._m(self.credit_note_applied)
        )
        return due if due.is_positive() else Money.zero(self.currency)

    @property
    def is_final(self) -> bool:
        return self.status != InvoiceStatus.DRAFT

    # -- transitions -----------------------------------------------------------------
    def _record(self, before: InvoiceStatus | None, action: str, detail: str, at: datetime) -> None:
        self.update_time = at
        self.new_history.append(HistoryEntry(before, self.status, action, detail, at))

    def _refuse(self, what: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"invoice {self.invoice_id} is {self.status.value}: cannot {what}",
            reason=INVALID_STATUS,
            metadata={"status": self.status.value},
        )

    def finalize(
        self,
        *,
        number: str,
        series: str,
        issue_date: date,
        due_date: date,
        account_credit: Money,
        at: datetime,
    ) -> Money:
        """Number the draft, date it and apply account credit; returns the credit used.

        An invoice whose total is negative (credits exceed charges) is settled at once;
        the caller moves ``-total`` to account credit.
        """
        if self.status != InvoiceStatus.DRAFT:
            raise self._refuse("finalise it again")
        self.number, self.series = number, series
        self.issue_date, self.due_date = issue_date, due_date
        self.finalize_time = at
        self.status = InvoiceStatus.OPEN
        used = Money.zero(self.currency)
        if self.gross.is_positive() and account_credit.is_positive():
            used = account_credit if account_credit < self.gross else self.gross
        self.credit_applied = used
        if self.amount_due.is_zero():
            self.status = InvoiceStatus.PAID
        self._record(InvoiceStatus.DRAFT, "finalized", number, at)
        return used

    def void(self, reason: str, at: datetime) -> None:
        if self.status != InvoiceStatus.OPEN or self._m(self.amount_paid).is_positive():
            raise self._refuse("void it (only an OPEN invoice with nothing paid can be voided)")
        self.status = InvoiceStatus.VOID
        self._record(InvoiceStatus.OPEN, "voided", reason, at)

    def mark_uncollectible(self, reason: str, at: datetime) -> None:
        if self.status not in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID):
            raise self._refuse("mark it uncollectible")
        before = self.status
        self.status = InvoiceStatus.UNCOLLECTIBLE
        self._record(before, "marked_uncollectible", reason, at)

    def record_payment(self, payment_id: str, amount: Money, at: datetime) -> None:
        """Allocate ``amount`` (at most what is due; the caller splits any excess off)."""
        if self.status not in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID):
            raise self._refuse("take a payment")
        if amount > self.amount_due:
            raise FailedPrecondition(
                f"{amount} is more than the {self.amount_due} due on invoice {self.number}",
                reason="AMOUNT_EXCEEDS_DUE",
            )
        before = self.status
        self.amount_paid = self._m(self.amount_paid) + amount
        self._settle_status()
        self._record(before, "payment", f"{payment_id} {amount}", at)

    def reverse_payment(
        self, payment_id: str, amount: Money, allocated: Money, kind: str, at: datetime
    ) -> None:
        """Take back ``amount`` of what ``payment_id`` allocated (``allocated`` so far)."""
        if self.status not in (
            InvoiceStatus.PAID,
            InvoiceStatus.PARTIALLY_PAID,
            InvoiceStatus.OPEN,
        ):
            raise self._refuse("reverse a payment")
        if amount > allocated:
            raise FailedPrecondition(
                f"{amount} is more than the {allocated} payment {payment_id} allocated",
                reason="REVERSAL_EXCEEDS_PAID",
            )
        before = self.status
        self.amount_paid = self._m(self.amount_paid) - amount
        self._settle_status()
        self._record(before, kind.lower(), f"{payment_id} {amount}", at)

    def _settle_status(self) -> None:
        if self.amount_due.is_zero():
            self.status = InvoiceStatus.PAID
        elif self._m(self.amount_paid).is_positive():
            self.status = InvoiceStatus.PARTIALLY_PAID
        else:
            self.status = InvoiceStatus.OPEN
        if self.disputed_amount is not None and self.disputed_amount > self.amount_due:
            self.disputed_amount = self.amount_due

    def apply_credit_note(self, number: str, gross: Money, at: datetime) -> Money:
        """Reduce what is due by a credit note; returns the part left for account credit."""
        if self.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            raise self._refuse("be credited")
        before = self.status
        due = self.amount_due
        applied = gross if gross < due else due
        self.credited_amount = self._m(self.credited_amount) + gross
        if self.status != InvoiceStatus.UNCOLLECTIBLE:
            self.credit_note_applied = self._m(self.credit_note_applied) + applied
            self._settle_status()
        self._record(before, "credit_note", f"{number} {gross}", at)
        return gross - applied

    def open_dispute(self, dispute_id: str, amount: Money, at: datetime) -> None:
        if self.status not in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID):
            raise self._refuse("be disputed")
        free = self.amount_due - self._m(self.disputed_amount)
        if amount > free:
            raise FailedPrecondition(
                f"{amount} is more than the {free} due and not yet disputed",
                reason="DISPUTE_EXCEEDS_DUE",
            )
        self.disputed_amount = self._m(self.disputed_amount) + amount
        self._record(self.status, "dispute_opened", f"{dispute_id} {amount}", at)

    def close_dispute(self, dispute_id: str, amount: Money, outcome: str, at: datetime) -> None:
        left = self._m(self.disputed_amount) - amount
        self.disputed_amount = left if left.is_positive() else Money.zero(self.currency)
        self._record(self.status, "dispute_resolved", f"{dispute_id} {outcome}", at)

    def record_dunning_level(self, level: int, at: datetime) -> None:
        if not self.is_final:
            raise self._refuse("be in dunning")
        self.dunning_level = level
        self._record(self.status, "dunning_level", str(level), at)


@dataclass(frozen=True)
class CreditNoteLine:
    line_id: str
    description: str
    net_amount: Money
    tax_category: str
    tax_rate: Decimal
    # The invoice line credited, or "" for an amount credited in a VAT group.
    invoice_line_id: str = ""

    def taxed(self) -> TaxedAmount:
        return TaxedAmount(self.net_amount, self.tax_category, self.tax_rate)


@dataclass
class CreditNote:
    credit_note_id: str
    number: str
    series: str
    invoice_id: str
    invoice_number: str
    account_id: str
    customer_id: str
    currency: str
    issue_date: date
    reason: str
    lines: list[CreditNoteLine]
    language_code: str
    create_time: datetime
    credited_to_account: Money | None = None
    total_net: Money | None = None
    total_tax: Money | None = None
    total_gross: Money | None = None
    breakdown: tuple[VatBreakdown, ...] = ()

    def __post_init__(self) -> None:
        result = totals([line.taxed() for line in self.lines], self.currency)
        self.total_net, self.total_tax, self.total_gross = result.net, result.tax, result.gross
        self.breakdown = result.breakdown
        if self.credited_to_account is None:
            self.credited_to_account = Money.zero(self.currency)

    @property
    def gross(self) -> Money:
        return self.total_gross if self.total_gross is not None else Money.zero(self.currency)


@dataclass
class Dispute:
    dispute_id: str
    invoice_id: str
    amount: Money
    reason: str
    open_time: datetime
    status: DisputeStatus = DisputeStatus.OPEN
    resolution_note: str = ""
    credit_note_id: str = ""
    resolve_time: datetime | None = None

    def resolve(self, won: bool, note: str, at: datetime) -> None:
        if self.status != DisputeStatus.OPEN:
            raise FailedPrecondition(
                f"dispute {self.dispute_id} is {self.status.value}", reason="DISPUTE_NOT_OPEN"
            )
        self.status = DisputeStatus.WON if won else DisputeStatus.LOST
        self.resolution_note = note
        self.resolve_time = at


@dataclass(frozen=True)
class PendingItem:
    """A charge or credit for the account's next invoice.

    Either priced (``amount`` set: AddPendingItem, corrections) or a plan fee to be
    priced by rating when the invoice is built (``fee_plan_code`` set: mid-cycle
    subscription changes), prorated by ``days_used`` of ``days_in_cycle`` and
    negated when ``credit`` (the unused part of an old price).
    """

    pending_item_id: str
    account_id: str
    kind: LineKind
    description: str
    service: str
    create_time: datetime
    amount: Money | None = None
    tax_category: str = ""
    tax_rate: Decimal | None = None
    reference_invoice_id: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None
    fee_plan_code: str = ""
    subscription_id: str = ""
    quantity: int = 1
    days_used: int = 0
    days_in_cycle: int = 0
    credit: bool = False
    invoice_id: str = ""
    source_account_id: str = ""

    def taken_by(self, invoice_id: str) -> PendingItem:
        return replace(self, invoice_id=invoice_id)


BUYER_VAT_ID_REQUIRED = "BUYER_VAT_ID_REQUIRED"
# EN 16931 categories whose invoice must name the buyer's VAT identifier (BT-48):
# reverse charge (BR-AE-02..04) and intra-community supply (BR-IC-02..04).
NEEDS_BUYER_VAT_ID = {"AE": "reverse charge", "K": "intra-community supply"}


def needs_buyer_vat_id(invoice: Invoice) -> list[str]:
    """The invoice's VAT categories that need the buyer's VAT identifier (sorted)."""
    return sorted({line.tax_category for line in invoice.lines} & NEEDS_BUYER_VAT_ID.keys())


def require_buyer_vat_id(invoice: Invoice, buyer_vat_id: str) -> None:
    """Refuse an invoice in AE or K for a customer without a VAT identifier: its
    e-invoice would fail EN 16931 validation, so it is never made (nothing is written,
    its usage stays unbilled for the next run once the customer's ``vat_id`` is set)."""
    needed = needs_buyer_vat_id(invoice)
    if not needed or buyer_vat_id.strip():
        return
    named = ", ".join(f"{c} ({NEEDS_BUYER_VAT_ID[c]})" for c in needed)
    raise FailedPrecondition(
        f"customer {invoice.customer_id} (account {invoice.account_id}) has no VAT identifier,"
        f" which an invoice in VAT category {named} must name (EN 16931 BR-AE-02, BR-IC-02):"
        " set the customer's vat_id in accounts",
        reason=BUYER_VAT_ID_REQUIRED,
        metadata={
            "customer_id": invoice.customer_id,
            "account_id": invoice.account_id,
            "vat_categories": ",".join(needed),
        },
    )
