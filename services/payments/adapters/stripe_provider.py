"""The Stripe adapter: the provider port on the official ``stripe`` library.

A card becomes a Stripe token and then a Customer holding it as its source:
Reckon's method token is the customer id (a reusable, chargeable handle), so
no card number is kept here either. Charges carry Reckon's idempotency key both
as Stripe's ``Idempotency-Key`` header and in the charge's metadata: a lost
answer is looked up by listing the customer's charges for that key. Tests run it
against ``localstripe`` (a Stripe-compatible server) on a loopback port.

A SEPA mandate is a ``sepa_debit`` PaymentMethod made from the IBAN (which Stripe
keeps; Reckon stores it masked) and set as a new Customer's default: the customer id
is again the token, so direct debits are charged and looked up like cards. The
reconciliation reads the account's balance transactions and payouts of a day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import stripe

from services.common.money import Money
from services.payments.domain.provider import (
    BalanceLine,
    CardDetails,
    CardToken,
    Payout,
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    Settlement,
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
        try:
            method = self._client.v1.payment_methods.create(
                params={
                    "type": "sepa_debit",
                    "sepa_debit": {"iban": iban},
                    "metadata": {"mandate_reference": mandate_reference},
                }
            )
            customer = self._client.v1.customers.create(
                params={
                    "payment_method": method.id,
                    "invoice_settings": {"default_payment_method": method.id},
                    "metadata": {"mandate_reference": mandate_reference},
                }
            )
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        except stripe.StripeError as exc:
            raise ProviderError(_message(exc), code=_code(exc)) from None
        return customer.id

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

    def lookup(self, idempotency_key: str, *, token: str = "") -> ProviderResult:
        # The method's token is the Stripe customer: asked after a restart too.
        customer = token or self._customer_of_key.get(idempotency_key)
        if not customer:
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

    # -- reconciliation -------------------------------------------------------------------------
    def settlement(self, day: date) -> Settlement:
        """The balance transactions created on ``day`` and the payouts arriving that day.

        Both lists are read newest first, page by page, until they are older than the
        day (localstripe takes no ``created`` filter on them; Stripe lists the same way).
        """
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        lines: list[BalanceLine] = []
        payouts: list[Payout] = []
        try:
            for txn in self._newest_first(self._client.v1.balance_transactions.list, start):
                created = datetime.fromtimestamp(int(txn["created"]), UTC)
                if not start <= created < end:
                    continue
                currency = str(txn["currency"]).upper()
                kind = "refund" if "refund" in str(txn["type"]) else "charge"
                lines.append(
                    BalanceLine(
                        provider_reference=str(txn["source"] or ""),
                        kind=kind,
                        gross=Money.from_minor_units(int(txn["amount"]), currency),
                        fee=Money.from_minor_units(int(txn["fee"] or 0), currency),
                        created=created,
                    )
                )
            # A payout arrives a few days after it is created: look two weeks back.
            since = start - timedelta(days=14)
            for payout in self._newest_first(self._client.v1.payouts.list, since):
                arrival = datetime.fromtimestamp(int(payout["arrival_date"]), UTC).date()
                if arrival != day:
                    continue
                payouts.append(
                    Payout(
                        str(payout["id"]),
                        Money.from_minor_units(
                            int(payout["amount"]), str(payout["currency"]).upper()
                        ),
                        arrival,
                        str(payout["status"]),
                    )
                )
        except stripe.APIConnectionError as exc:
            raise ProviderTimeout(str(exc)) from None
        except stripe.StripeError as exc:
            raise ProviderError(_message(exc), code=_code(exc)) from None
        return Settlement(lines, payouts)

    @staticmethod
    def _newest_first(list_call: Any, since: datetime) -> list[Any]:
        found: list[Any] = []
        after = ""
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            page = list_call(params=params)
            for item in page.data:
                if datetime.fromtimestamp(int(item["created"]), UTC) < since:
                    return found
                found.append(item)
            if not page.has_more or not page.data:
                return found
            after = page.data[-1]["id"]


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
