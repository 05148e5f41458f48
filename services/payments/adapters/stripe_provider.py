"""The Stripe adapter: the provider port on the official ``stripe`` library.

A card becomes a Stripe token and then a Customer holding it as its source:
Reckon's method token is the customer id (a reusable, chargeable handle), so
no card number is kept here either. Charges carry Reckon's idempotency key both
as Stripe's ``Idempotency-Key`` header and in the charge's metadata: a lost
answer is looked up by listing the customer's charges for that key. Tests run it
against ``localstripe`` (a Stripe-compatible server) on a loopback port.
"""

from __future__ import annotations

from datetime import date

import stripe

from services.common.money import Money
from services.payments.domain.provider import (
    CardDetails,
    CardToken,
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
)

_KEY_FIELD = "reckon_idempotency_key"


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, *, api_base: str | None = None) -> None:
        addresses: dict[str, str] = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=addresses,  # type: ignore[arg-type]
            max_network_retries=0,  # Reckon's janitor decides about lost answers
        )
        # Which customer a key was charged on: lookups list that customer's charges.
        self._customer_of_key: dict[str, str] = {}

    def tokenise_card(self, card: CardDetails, *, today: date) -> CardToken:
        try:
            token = self._client.v1.tokens.create(
                params={
                    "card": {
                        "number": card.number,
                        "exp_month": str(card.exp_month),
                        "exp_year": str(card.exp_year),
                        "cvc": card.cvc or "123",
                    }
                }
            )
            customer = self._client.v1.customers.create(params={"source": token.id})
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        except stripe.StripeError as exc:
            raise ProviderError(_message(exc), code=_code(exc)) from None
        details = token.card
        if details is None:
            raise ProviderError("Stripe returned a token without a card", code="invalid_number")
        return CardToken(
            customer.id,
            str(details.brand).lower(),
            str(details.last4),
            int(details.exp_month),
            int(details.exp_year),
        )

    def register_mandate(self, *, iban: str, mandate_reference: str) -> str:
        raise ProviderError(
            "direct debit mandates are not supported by the Stripe adapter", code="unsupported"
        )

    def charge(
        self, *, token: str, amount: Money, idempotency_key: str, description: str = ""
    ) -> ProviderResult:
        self._customer_of_key[idempotency_key] = token
        try:
            charge = self._client.v1.charges.create(
                params={
                    "amount": amount.minor_units,
                    "currency": amount.currency.lower(),
                    "customer": token,
                    "description": description,
                    "metadata": {_KEY_FIELD: idempotency_key},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        except stripe.CardError as exc:
            return ProviderResult(
                ProviderStatus.FAILED, _charge_id(exc), _decline(exc), _message(exc)
            )
        except stripe.StripeError as exc:
            raise ProviderError(_message(exc), code=_code(exc)) from None
        return _result_of(charge.status, charge.id, charge.failure_code or "")

    def refund(
        self, *, provider_reference: str, amount: Money, idempotency_key: str
    ) -> ProviderResult:
        try:
            refund = self._client.v1.refunds.create(
                params={
                    "charge": provider_reference,
                    "amount": amount.minor_units,
                    "metadata": {_KEY_FIELD: idempotency_key},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        except stripe.StripeError as exc:
            raise ProviderError(_message(exc), code=_code(exc)) from None
        return _result_of(refund.status or "", refund.id, "")

    def lookup(self, idempotency_key: str) -> ProviderResult:
        customer = self._customer_of_key.get(idempotency_key)
        if customer is None:
            return ProviderResult(ProviderStatus.NOT_FOUND)
        try:
            charges = self._client.v1.charges.list(params={"customer": customer, "limit": 100})
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        for charge in charges.data:
            metadata = charge.metadata.to_dict() if charge.metadata else {}
            if metadata.get(_KEY_FIELD) == idempotency_key:
                return _result_of(charge.status, charge.id, charge.failure_code or "")
        return ProviderResult(ProviderStatus.NOT_FOUND)


def _result_of(status: str, reference: str, failure_code: str) -> ProviderResult:
    if status == "succeeded":
        return ProviderResult(ProviderStatus.SUCCEEDED, reference)
    if status == "pending":
        return ProviderResult(ProviderStatus.PENDING, reference)
    return ProviderResult(ProviderStatus.FAILED, reference, failure_code or "generic_decline")


def _decline(exc: stripe.StripeError) -> str:
    error = exc.error
    decline = getattr(error, "decline_code", None) if error is not None else None
    return str(decline or exc.code or "generic_decline")


def _charge_id(exc: stripe.StripeError) -> str:
    error = exc.error
    return str(getattr(error, "charge", "") or "") if error is not None else ""


def _code(exc: stripe.StripeError) -> str:
    return str(exc.code or "invalid_request")


def _message(exc: stripe.StripeError) -> str:
    error = exc.error
    return str(getattr(error, "message", "") or exc.user_message or "declined")
