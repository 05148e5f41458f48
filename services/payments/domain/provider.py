"""The payment provider port: what Reckon asks of a PSP, whichever it is.

A provider tokenises card numbers (the PAN goes to the provider and never comes
back: Reckon keeps the token, brand, last four and expiry), charges and refunds
a token under an idempotency key, and answers ``lookup`` for a key whose first
answer was lost. The sandbox (``adapters.sandbox``) and the Stripe adapter
(``adapters.stripe_provider``) implement it; the service layer knows only this.

An answer that never arrived is not an error to guess about: ``charge`` raises
``ProviderTimeout`` and the transaction becomes UNKNOWN until ``lookup`` says
what happened (the janitor, ``service_layer.janitor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from services.common.money import Money


class ProviderStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # Accepted, result later (bank transfer, direct debit): a signed callback or lookup.
    PENDING = "PENDING"
    # The provider has no record of the key: the request never reached it.
    NOT_FOUND = "NOT_FOUND"


# Declines a retry cannot fix (DOMAIN.md, Payments): never retried, dunning starts at once.
HARD_DECLINES = frozenset(
    {
        "lost_card",
        "stolen_card",
        "pickup_card",
        "invalid_number",
        "incorrect_number",
        "closed_account",
        "transaction_not_allowed",
        "do_not_try_again",
        "fraudulent",
    }
)


def is_hard_decline(decline_code: str) -> bool:
    return decline_code in HARD_DECLINES


@dataclass(frozen=True)
class CardDetails:
    """What the customer types; handed to the provider once and never stored."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str = ""


@dataclass(frozen=True)
class CardToken:
    """What Reckon keeps of a card: the provider's token and harmless details."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ProviderResult:
    status: ProviderStatus
    provider_reference: str = ""
    decline_code: str = ""
    message: str = ""

    @property
    def hard_decline(self) -> bool:
        return self.status is ProviderStatus.FAILED and is_hard_decline(self.decline_code)


@dataclass(frozen=True)
class BalanceLine:
    """One movement of the merchant's balance at the provider (Stripe's balance transaction).

    ``gross`` is signed (a refund is negative); ``fee`` is what the provider kept, so
    ``net`` is what the line adds to the next payout.
    """

    provider_reference: str  # the charge or refund it comes from
    kind: str  # "charge" | "refund"
    gross: Money
    fee: Money
    created: datetime
    method: str = ""  # "card" | "sepa_debit" | "" when the provider does not say
    payout_id: str = ""

    @property
    def net(self) -> Money:
        return self.gross - self.fee


@dataclass(frozen=True)
class Payout:
    """Money the provider sent to the merchant's bank account."""

    payout_id: str
    amount: Money
    arrival_date: date
    status: str  # pending | in_transit | paid | failed | canceled


@dataclass(frozen=True)
class Settlement:
    """A day at the provider: its balance movements and the payouts arriving that day."""

    lines: list[BalanceLine] = field(default_factory=list)
    payouts: list[Payout] = field(default_factory=list)


class ProviderError(Exception):
    """The provider refused the request itself (bad token, bad amount): nothing happened."""

    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class ProviderTimeout(Exception):
    """No answer: the request may or may not have been carried out (outcome UNKNOWN)."""


class PaymentProvider(Protocol):
    """One PSP. Every mutating call carries Reckon's idempotency key for it."""

    name: str

    def tokenise_card(self, card: CardDetails, *, today: date) -> CardToken:
        """Vault the card at the provider; raises ProviderError for a bad or expired card."""
        ...

    def register_mandate(self, *, iban: str, mandate_reference: str) -> str:
        """A direct-debit mandate at the provider; the token charges it (results come later)."""
        ...

    def charge(
        self, *, token: str, amount: Money, idempotency_key: str, description: str = ""
    ) -> ProviderResult:
        """Take ``amount`` from the tokenised method; the same key never charges twice."""
        ...

    def refund(
        self, *, provider_reference: str, amount: Money, idempotency_key: str
    ) -> ProviderResult: ...

    def lookup(self, idempotency_key: str, *, token: str = "") -> ProviderResult:
        """What became of the request sent with ``idempotency_key`` (NOT_FOUND: never arrived).

        ``token`` is the method the charge was sent for: a provider that can only list
        charges per customer (Stripe without search) looks there.
        """
        ...

    def settlement(self, day: date) -> Settlement:
        """Balance movements created on ``day`` (UTC) and payouts arriving that day."""
        ...


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of a batch (``charge_many``): what ``charge`` takes, as a value."""

    token: str
    amount: Money
    idempotency_key: str
    description: str = ""


# What became of one charge of a batch: the answer, or the exception ``charge`` would raise.
ChargeOutcome = ProviderResult | ProviderTimeout | ProviderError


@runtime_checkable
class BatchChargingProvider(Protocol):
    """A provider that takes a batch of charges in one call (the sandbox, a PSP batch API)."""

    def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeOutcome]:
        """One outcome per request, in order; each key charges at most once, as ``charge``."""
        ...


def charge_many(
    provider: PaymentProvider, requests: Sequence[ChargeRequest]
) -> list[ChargeOutcome]:
    """The provider's batch call when it has one, else its ``charge`` once per request.

    An exception of one charge is that charge's outcome, never the batch's: the others
    were made and must be recorded.
    """
    if isinstance(provider, BatchChargingProvider):
        return provider.charge_many(requests)
    outcomes: list[ChargeOutcome] = []
    for request in requests:
        try:
            outcomes.append(
                provider.charge(
                    token=request.token,
                    amount=request.amount,
                    idempotency_key=request.idempotency_key,
                    description=request.description,
                )
            )
        except (ProviderTimeout, ProviderError) as exc:
            outcomes.append(exc)
    return outcomes
