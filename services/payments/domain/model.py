"""Payment methods, account payment settings and payment transactions (pure rules).

A ``Payment`` is one transaction (purchase, refund or chargeback) with the
states of DOMAIN.md: PENDING (sent, no answer yet, or accepted for later
settlement), SUCCEEDED, FAILED, UNKNOWN (the answer was lost). Each provider
call is an ``Attempt`` whose id is the idempotency key the provider sees, so
asking again (the janitor) or sending again (a crash before commit) never
charges twice. A failed collection gets a new attempt on the retry schedule;
a hard decline ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from services.common.money import Money
from services.payments.domain.provider import ProviderResult, ProviderStatus

# The janitor asks about an UNKNOWN (or silent PENDING) attempt after these delays
# from the time it was sent (Kill Bill's janitor: 5 minutes, 1 hour, then daily for 5 days).
JANITOR_DELAYS = (
    timedelta(minutes=5),
    timedelta(hours=1),
    *(timedelta(days=d) for d in range(1, 6)),
)
# Days after the first failure at which a failed collection is tried again (Stripe's default).
DEFAULT_RETRY_DAYS = (1, 3, 5, 7)


class MethodKind(StrEnum):
    CARD = "CARD"
    SEPA_DEBIT = "SEPA_DEBIT"
    BANK_TRANSFER = "BANK_TRANSFER"
    WALLET = "WALLET"


class Channel(StrEnum):
    """How money arrived (PAY-1)."""

    ONLINE_CARD = "ONLINE_CARD"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    BANK_TRANSFER = "BANK_TRANSFER"
    TERMINAL = "TERMINAL"
    CASH_DESK = "CASH_DESK"
    WALLET = "WALLET"


CHANNEL_OF_METHOD = {
    MethodKind.CARD: Channel.ONLINE_CARD,
    MethodKind.SEPA_DEBIT: Channel.DIRECT_DEBIT,
    MethodKind.BANK_TRANSFER: Channel.BANK_TRANSFER,
    MethodKind.WALLET: Channel.WALLET,
}


class TransactionKind(StrEnum):
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    CHARGEBACK = "CHARGEBACK"


class PaymentState(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


class Purpose(StrEnum):
    INVOICE = "INVOICE"  # settles invoices (automatic collection or a manual payment)
    TOP_UP = "TOP_UP"  # credits the prepaid balance in charging


class AttemptState(StrEnum):
    SENT = "SENT"  # committed before the provider call: its outcome is not yet known here
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


@dataclass
class PaymentMethod:
    method_id: str
    customer_id: str
    account_id: str
    kind: MethodKind
    provider: str
    token: str = ""
    card_brand: str = ""
    card_last4: str = ""
    card_exp_month: int = 0
    card_exp_year: int = 0
    iban_masked: str = ""
    mandate_reference: str = ""
    mandate_signed_on: date | None = None
    payment_reference: str = ""
    wallet_name: str = ""
    created_at: datetime | None = None
    removed: bool = False


@dataclass
class AccountPaymentSettings:
    account_id: str
    customer_id: str
    currency: str
    group_id: str = ""
    auto_collect: bool = True
    default_method_id: str = ""


@dataclass
class Attempt:
    attempt_id: str  # the idempotency key the provider sees
    payment_id: str
    number: int
    sent_at: datetime
    state: AttemptState = AttemptState.SENT
    decline_code: str = ""
    provider_reference: str = ""
    resolved_at: datetime | None = None


@dataclass
class Allocation:
    payment_id: str
    invoice_id: str
    amount: Money
    applied: bool = False  # invoicing has recorded it


@dataclass
class Payment:
    payment_id: str
    kind: TransactionKind
    purpose: Purpose
    account_id: str
    customer_id: str
    channel: Channel
    amount: Money
    created_at: datetime
    method_id: str = ""
    provider: str = ""
    parent_payment_id: str = ""
    state: PaymentState = PaymentState.PENDING
    provider_reference: str = ""
    decline_code: str = ""
    hard_decline: bool = False
    settled_at: datetime | None = None
    # The invoices a collection was started for (comma-separated ids, oldest first).
    invoice_ids: str = ""
    # Retries of failed collections.
    retry_days: str = ""
    failures: int = 0
    first_failed_at: datetime | None = None
    next_retry_at: datetime | None = None
    # The janitor's next question about a SENT/UNKNOWN/PENDING attempt.
    next_check_at: datetime | None = None
    checks_done: int = 0
    refunded_amount: Decimal = Decimal(0)
    credit_amount: Decimal = Decimal(0)  # what exceeded the invoices: account credit
    # Effects in other services still to be applied (invoicing allocation, charging top-up).
    effects_pending: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    version: int = 0

    # -- queries -------------------------------------------------------------------------
    @property
    def invoice_list(self) -> list[str]:
        return [i for i in self.invoice_ids.split(",") if i]

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def refunded(self) -> Money:
        return Money(self.refunded_amount, self.amount.currency)

    @property
    def credit(self) -> Money:
        return Money(self.credit_amount, self.amount.currency)

    @property
    def refundable(self) -> Money:
        return self.amount - self.refunded

    # -- state machine -------------------------------------------------------------------
    def start_attempt(self, attempt_id: str, now: datetime) -> Attempt:
        """A new provider call, committed before it is made (so a crash leaves a trace)."""
        if self.state is PaymentState.SUCCEEDED:
            raise ValueError("a succeeded payment is not sent again")
        attempt = Attempt(attempt_id, self.payment_id, len(self.attempts) + 1, now)
        self.attempts.append(attempt)
        self.state = PaymentState.PENDING
        self.next_retry_at = None
        self.next_check_at = now + JANITOR_DELAYS[0]
        self.checks_done = 0
        return attempt

    def apply_result(self, attempt_id: str, result: ProviderResult, now: datetime) -> bool:
        """Record the provider's answer for an attempt; False if it was already final."""
        attempt = self._attempt(attempt_id)
        if attempt.state in (AttemptState.SUCCEEDED, AttemptState.FAILED):
            return False
        attempt.provider_reference = result.provider_reference or attempt.provider_reference
        if result.provider_reference:
            self.provider_reference = result.provider_reference
        if result.status is ProviderStatus.PENDING:
            attempt.state = AttemptState.PENDING
            self.state = PaymentState.PENDING
            return True
        attempt.resolved_at = now
        self.next_check_at = None
        if result.status is ProviderStatus.SUCCEEDED:
            attempt.state = AttemptState.SUCCEEDED
            self.state = PaymentState.SUCCEEDED
            self.settled_at = now
            self.decline_code = ""
            self.next_retry_at = None
            return True
        attempt.state = AttemptState.FAILED
        attempt.decline_code = result.decline_code or "not_found"
        self.state = PaymentState.FAILED
        self.decline_code = attempt.decline_code
        self.hard_decline = result.hard_decline
        self._schedule_retry(now)
        return True

    def mark_unknown(self, attempt_id: str, now: datetime) -> None:
        attempt = self._attempt(attempt_id)
        if attempt.state is AttemptState.SENT:
            attempt.state = AttemptState.UNKNOWN
            self.state = PaymentState.UNKNOWN

    def janitor_checked(self, now: datetime) -> None:
        """The provider still had no final answer: ask again later, or stop asking."""
        self.checks_done += 1
        sent = self.last_attempt.sent_at if self.last_attempt else now
        if self.checks_done < len(JANITOR_DELAYS):
            self.next_check_at = max(sent + JANITOR_DELAYS[self.checks_done], now)
        else:
            # Out of questions: it stays UNKNOWN for a person to resolve, never guessed.
            self.next_check_at = None
        attempt = self.last_attempt
        if attempt is not None and attempt.state is AttemptState.SENT:
            attempt.state = AttemptState.UNKNOWN
            self.state = PaymentState.UNKNOWN

    def _schedule_retry(self, now: datetime) -> None:
        self.failures += 1
        if self.first_failed_at is None:
            self.first_failed_at = now
        days = [int(d) for d in self.retry_days.split(",") if d]
        # Only collections are retried by Reckon; a hard decline never is.
        if self.kind is not TransactionKind.PURCHASE or self.hard_decline or not self.method_id:
            self.next_retry_at = None
            return
        index = self.failures - 1
        self.next_retry_at = (
            self.first_failed_at + timedelta(days=days[index]) if index < len(days) else None
        )

    def _attempt(self, attempt_id: str) -> Attempt:
        for attempt in self.attempts:
            if attempt.attempt_id == attempt_id:
                return attempt
        raise KeyError(attempt_id)


def allocate_oldest_first(
    amount: Money, open_invoices: list[tuple[str, Money]]
) -> tuple[list[tuple[str, Money]], Money]:
    """Split ``amount`` over (invoice id, amount due) oldest first; the rest is credit."""
    left = amount
    parts: list[tuple[str, Money]] = []
    for invoice_id, due in open_invoices:
        if not left.is_positive():
            break
        if not due.is_positive():
            continue
        part = due if due <= left else left
        parts.append((invoice_id, part))
        left = left - part
    return parts, left
