"""The built-in sandbox PSP: the embedded default provider of ``reckon up``.

It behaves like a real provider so the rest of Reckon cannot tell the difference:
card numbers are tokenised here and never handed back (the vault keeps only what
the card does, its brand, last four and expiry), each idempotency key is
carried out once and its first answer replayed, and the test cards of DOMAIN.md
succeed, decline or never answer. Direct debits and bank transfer intents are
accepted as PENDING and settle later (``settle_due``), each result delivered as
a callback signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) that the payments service verifies before believing it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from base64 import b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from services.common.clock import Clock
from services.common.ids import new_id
from services.common.money import Money, Rounding
from services.payments.domain.provider import (
    BalanceLine,
    CardDetails,
    CardToken,
    ChargeOutcome,
    ChargeRequest,
    Payout,
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    Settlement,
)
from services.payments.domain.references import luhn_valid as luhn_valid  # re-exported

# Test card -> decline code ("" succeeds). Stripe's numbers, so people recognise them.
TEST_CARDS: dict[str, str] = {
    "4242424242424242": "",
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000000069": "expired_card",
    "4000000000000119": "processing_error",
    "4000000000000341": "generic_decline",  # attaches fine, fails when charged
}
# The provider carries the charge out but its answer never reaches Reckon.
NEVER_ANSWERS = "4000000000009920"
_NO_ANSWER = "__no_answer__"
# Declined ``processing_error`` on its first RECOVERS_AFTER charges, then succeeds: a
# retryable decline that the retry schedule fixes (``reckon demo``, issue 11 item 9).
RECOVERING_CARD = "4000000000005118"
RECOVERS_AFTER = 4
_RECOVERS = "__recovers__"
# A mandate on this IBAN (Stripe's failing SEPA test IBAN) bounces at settlement.
FAILING_IBAN = "DE62370400440532013001"

# What the sandbox keeps of each settled charge, like a PSP's price list (Stripe's standard
# EEA prices): cards 1.5 % + 0.25, SEPA direct debits 0.35 flat; a refund costs nothing.
CARD_FEE_RATE = "0.015"
CARD_FEE_FIXED = "0.25"
SEPA_FEE_FIXED = "0.35"

log = logging.getLogger(__name__)

Callback = Callable[[bytes, dict[str, str]], object]


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or (
        number[:4].isdigit() and (2221 <= int(number[:4]) <= 2720)
    ):
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


@dataclass
class _Vaulted:
    behaviour: str  # decline code, "" to succeed, _NO_ANSWER, or "sepa:<ok|code>"
    kind: str  # "card" | "sepa"


@dataclass
class _Charge:
    key: str
    token: str
    amount: Money
    reference: str
    status: ProviderStatus
    decline_code: str = ""
    settle_at: datetime | None = None
    refunded: Money | None = None


@dataclass
class _BalanceTxn:
    """A movement of the merchant's balance: a settled charge (less its fee) or a refund."""

    txn_id: str
    source: str  # the charge's or refund's reference
    kind: str  # "charge" | "refund"
    method: str  # "card" | "sepa_debit"
    gross: Money
    created: datetime
    payout_id: str = ""

    @property
    def fee(self) -> Money:
        # Worked out when read (reports, payouts), not on the charge's hot path.
        return fee_of(self.kind, self.method, self.gross)


def fee_of(kind: str, method: str, gross: Money) -> Money:
    """The sandbox's price for a movement: cards 1.5 % (rounded once, half up) + 0.25,
    SEPA debits 0.35, refunds nothing."""
    if kind != "charge":
        return Money.zero(gross.currency)
    if method == "sepa_debit":
        return Money.of(SEPA_FEE_FIXED, gross.currency)
    return gross.times(Decimal(CARD_FEE_RATE), rounding=Rounding.HALF_UP) + Money.of(
        CARD_FEE_FIXED, gross.currency
    )


def _method_of(charge: _Charge) -> str:
    # Only direct debits settle later: a charge with a settlement day is one.
    return "sepa_debit" if charge.settle_at is not None else "card"


def new_webhook_secret() -> str:
    return "whsec_" + b64encode(secrets.token_bytes(24)).decode()


class SandboxProvider:
    """A PSP in process memory. Thread-safe; its counters let tests count real charges."""

    name = "sandbox"

    def __init__(
        self,
        clock: Clock,
        *,
        webhook_secret: str | None = None,
        settle_after: timedelta = timedelta(days=2),
        journal: Path | None = None,
    ) -> None:
        self._clock = clock
        self.webhook_secret = webhook_secret or new_webhook_secret()
        self._signer = Webhook(self.webhook_secret)
        self._settle_after = settle_after
        self._lock = threading.Lock()
        self._vault: dict[str, _Vaulted] = {}
        self._charges: dict[str, _Charge] = {}  # by idempotency key
        self._by_reference: dict[str, _Charge] = {}
        self._refunds: dict[str, ProviderResult] = {}
        self._callback: Callback | None = None
        self._undelivered: list[_Charge] = []
        # The merchant's balance: movements in order, and the payouts made of them.
        self._balance: list[_BalanceTxn] = []
        # Movements not yet in a payout, by UTC day and currency (a pass looks at ended days).
        self._unpaid: dict[tuple[date, str], list[_BalanceTxn]] = {}
        self._payouts: list[Payout] = []
        self.answering = True  # False: every call times out (a provider gone silent)
        self.calls = 0
        # What the "PSP" remembers across restarts of the process that embeds it (vaulted
        # tokens and their behaviour, charges, refunds; never a card number), as JSON lines.
        self._journal = journal
        # Journal records of a charge_many in progress, appended in one write at its end.
        self._buffer: list[dict[str, Any]] | None = None
        if journal is not None:
            self._replay(journal)

    def _write(self, record: dict[str, Any]) -> None:
        if self._buffer is not None:  # inside charge_many: written together at its end
            self._buffer.append(record)
        else:
            self._write_many([record])

    def _write_many(self, records: list[dict[str, Any]]) -> None:
        if self._journal is not None and records:
            with self._journal.open("a", encoding="utf-8") as out:
                out.write("".join(json.dumps(record) + "\n" for record in records))

    def _replay(self, path: Path) -> None:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            kind = record.get("t")
            if kind == "vault":
                self._vault[record["token"]] = _Vaulted(record["behaviour"], record["kind"])
            elif kind == "charge":
                settle = record.get("settle_at")
                charge = _Charge(
                    record["key"],
                    record["token"],
                    Money.of(record["amount"], record["currency"]),
                    record["reference"],
                    ProviderStatus(record["status"]),
                    record.get("decline", ""),
                    datetime.fromisoformat(settle) if settle else None,
                )
                self._charges[charge.key] = charge
                self._by_reference[charge.reference] = charge
            elif kind == "txn":
                self._balance.append(
                    txn := _BalanceTxn(
                        record["id"],
                        record["source"],
                        record["kind"],
                        record["method"],
                        Money.of(record["gross"], record["currency"]),
                        datetime.fromisoformat(record["created"]),
                    )
                )
                self._keep_unpaid(txn)
            elif kind == "payout":
                self._replay_payout(record)
            elif kind == "status" and record["key"] in self._charges:
                self._charges[record["key"]].status = ProviderStatus(record["status"])
            elif kind == "refund" and record["charge"] in self._by_reference:
                refunded = self._by_reference[record["charge"]]
                amount = Money.of(record["amount"], record["currency"])
                refunded.refunded = (refunded.refunded or Money.zero(amount.currency)) + amount
                self._refunds[record["key"]] = ProviderResult(
                    ProviderStatus.SUCCEEDED, record["reference"]
                )

    # -- what tests and the service wire up ---------------------------------------------
    def on_callback(self, callback: Callback) -> None:
        self._callback = callback

    @property
    def charges_made(self) -> int:
        """Charges the "card networks" carried out (succeeded ones), across all keys."""
        with self._lock:
            return sum(1 for c in self._charges.values() if c.status is ProviderStatus.SUCCEEDED)

    # -- the provider port ----------------------------------------------------------------
    def tokenise_card(self, card: CardDetails, *, today: date) -> CardToken:
        self._answer_or_time_out()
        number = card.number.replace(" ", "")
        if not luhn_valid(number):
            raise ProviderError("the card number is not valid", code="invalid_number")
        if not 1 <= card.exp_month <= 12 or (card.exp_year, card.exp_month) < (
            today.year,
            today.month,
        ):
            raise ProviderError(
                "the card has expired or its expiry is invalid", code="invalid_expiry"
            )
        behaviour = _NO_ANSWER if number == NEVER_ANSWERS else TEST_CARDS.get(number, "")
        if number == RECOVERING_CARD:
            behaviour = _RECOVERS
        token = new_id("sbxcard")
        with self._lock:
            self._vault[token] = _Vaulted(behaviour, "card")
            self._write({"t": "vault", "token": token, "behaviour": behaviour, "kind": "card"})
        return CardToken(token, brand_of(number), number[-4:], card.exp_month, card.exp_year)

    def register_mandate(self, *, iban: str, mandate_reference: str) -> str:
        self._answer_or_time_out()
        token = new_id("sbxmandate")
        outcome = "insufficient_funds" if iban == FAILING_IBAN else ""
        with self._lock:
            self._vault[token] = _Vaulted(outcome, "sepa")
            self._write({"t": "vault", "token": token, "behaviour": outcome, "kind": "sepa"})
        return token

    def charge(
        self, *, token: str, amount: Money, idempotency_key: str, description: str = ""
    ) -> ProviderResult:
        self._answer_or_time_out()
        with self._lock:
            outcome = self._charge_locked(token, amount, idempotency_key)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeOutcome]:
        """A batch of charges under one lock and one journal append (a PSP's batch API).

        Each request is carried out exactly as ``charge`` would; what ``charge`` raises
        for one request is that request's outcome.
        """
        if not self.answering:
            return [ProviderTimeout("the provider is not answering") for _ in requests]
        with self._lock:
            self._buffer = []
            try:
                outcomes = [
                    self._charge_locked(r.token, r.amount, r.idempotency_key) for r in requests
                ]
            finally:
                records, self._buffer = self._buffer, None
                self._write_many(records)
        return outcomes

    def _charge_locked(self, token: str, amount: Money, idempotency_key: str) -> ChargeOutcome:
        """Carry out one charge (the caller holds the lock); what ``charge`` raises is returned."""
        self.calls += 1
        done = self._charges.get(idempotency_key)
        if done is not None:
            if done.token != token or done.amount != amount:
                return ProviderError(
                    "idempotency key reused with different parameters", code="idempotency_error"
                )
            return self._result(done)
        vaulted = self._vault.get(token)
        if vaulted is None:
            return ProviderError("no such payment method token", code="resource_missing")
        if not amount.is_positive():
            return ProviderError("amount must be positive", code="amount_too_small")
        reference = new_id("sbxch")
        charge = _Charge(idempotency_key, token, amount, reference, ProviderStatus.SUCCEEDED)
        if vaulted.kind == "sepa":
            charge.status = ProviderStatus.PENDING
            charge.decline_code = vaulted.behaviour
            charge.settle_at = self._clock.now() + self._settle_after
        elif vaulted.behaviour == _RECOVERS:
            tried = sum(1 for c in self._charges.values() if c.token == token)
            if tried < RECOVERS_AFTER:
                charge.status = ProviderStatus.FAILED
                charge.decline_code = "processing_error"
        elif vaulted.behaviour not in ("", _NO_ANSWER):
            charge.status = ProviderStatus.FAILED
            charge.decline_code = vaulted.behaviour
        self._charges[idempotency_key] = charge
        self._write(
            {
                "t": "charge",
                "key": idempotency_key,
                "token": token,
                "amount": str(amount.amount),
                "currency": amount.currency,
                "reference": reference,
                "status": charge.status.value,
                "decline": charge.decline_code,
                "settle_at": charge.settle_at.isoformat() if charge.settle_at else None,
            }
        )
        self._by_reference[reference] = charge
        if charge.status is ProviderStatus.SUCCEEDED:
            self._book_charge(charge)
        if vaulted.behaviour == _NO_ANSWER:
            # Carried out, but the answer is lost on the way back.
            return ProviderTimeout("the provider did not answer in time")
        return self._result(charge)

    def refund(
        self, *, provider_reference: str, amount: Money, idempotency_key: str
    ) -> ProviderResult:
        self._answer_or_time_out()
        with self._lock:
            if idempotency_key in self._refunds:
                return self._refunds[idempotency_key]
            charge = self._by_reference.get(provider_reference)
            if charge is None or charge.status is not ProviderStatus.SUCCEEDED:
                raise ProviderError(
                    "no succeeded charge with that reference", code="charge_missing"
                )
            refunded = charge.refunded or Money.zero(amount.currency)
            if amount.currency != charge.amount.currency or refunded + amount > charge.amount:
                raise ProviderError("refund exceeds the charge", code="amount_too_large")
            charge.refunded = refunded + amount
            result = ProviderResult(ProviderStatus.SUCCEEDED, new_id("sbxre"))
            self._refunds[idempotency_key] = result
            self._write(
                {
                    "t": "refund",
                    "key": idempotency_key,
                    "charge": provider_reference,
                    "amount": str(amount.amount),
                    "currency": amount.currency,
                    "reference": result.provider_reference,
                }
            )
            self._book(result.provider_reference, "refund", _method_of(charge), -amount)
            return result

    def lookup(self, idempotency_key: str, *, token: str = "") -> ProviderResult:
        self._answer_or_time_out()
        with self._lock:
            charge = self._charges.get(idempotency_key)
            if charge is None:
                refund = self._refunds.get(idempotency_key)
                return refund or ProviderResult(ProviderStatus.NOT_FOUND)
            return self._result(charge)

    # -- asynchronous settlement ----------------------------------------------------------
    def settle_due(self) -> int:
        """Settle direct debits whose day has come and send each result as a signed callback."""
        now = self._clock.now()
        settled: list[_Charge] = []
        with self._lock:
            for charge in self._charges.values():
                if (
                    charge.status is ProviderStatus.PENDING
                    and charge.settle_at
                    and charge.settle_at <= now
                ):
                    charge.status = (
                        ProviderStatus.FAILED if charge.decline_code else ProviderStatus.SUCCEEDED
                    )
                    settled.append(charge)
                    self._write({"t": "status", "key": charge.key, "status": charge.status.value})
                    if charge.status is ProviderStatus.SUCCEEDED:
                        self._book_charge(charge)
            self._pay_out(now)
        # Like a real PSP, a callback the receiver did not take is sent again next time.
        with self._lock:
            retry, self._undelivered = self._undelivered, []
        for charge in [*retry, *settled]:
            self._send_callback(charge)
        return len(settled)

    # -- the merchant's balance and payouts ---------------------------------------------------
    def settlement(self, day: date) -> Settlement:
        """The day's balance movements and the payouts arriving that day."""
        self._answer_or_time_out()
        with self._lock:
            self._pay_out(self._clock.now())
            lines = [
                BalanceLine(t.source, t.kind, t.gross, t.fee, t.created, t.method, t.payout_id)
                for t in self._balance
                if t.created.astimezone(UTC).date() == day
            ]
            payouts = [p for p in self._payouts if p.arrival_date == day]
        return Settlement(lines, payouts)

    def _book_charge(self, charge: _Charge) -> None:
        self._book(charge.reference, "charge", _method_of(charge), charge.amount)

    def _book(self, source: str, kind: str, method: str, gross: Money) -> None:
        """Record a balance movement (the caller holds the lock)."""
        # Numbered, not random: cheap on the charge path, and unique across restarts
        # because the journal brings the earlier movements back first.
        txn = _BalanceTxn(
            f"sbxtxn_{len(self._balance) + 1:09d}", source, kind, method, gross, self._clock.now()
        )
        self._balance.append(txn)
        self._keep_unpaid(txn)
        if self._journal is not None:
            self._write(
                {
                    "t": "txn",
                    "id": txn.txn_id,
                    "source": source,
                    "kind": kind,
                    "method": method,
                    "gross": str(gross.amount),
                    "currency": gross.currency,
                    "created": txn.created.isoformat(),
                }
            )

    def _pay_out(self, now: datetime) -> None:
        """Pay out, per currency, the balance of every day that has ended (the caller holds
        the lock): one payout the next day of all movements not yet paid out. A day whose
        refunds exceed its charges pays nothing; its balance is carried into the next."""
        today = now.astimezone(UTC).date()
        ended = sorted(key for key in self._unpaid if key[0] < today)
        carried: dict[str, list[_BalanceTxn]] = {}
        for day, currency in ended:
            batch = carried.pop(currency, []) + self._unpaid.pop((day, currency))
            net = sum((t.gross - t.fee for t in batch), Money.zero(currency))
            if not net.is_positive():
                carried[currency] = batch
                continue
            payout = Payout(new_id("sbxpo"), net, day + timedelta(days=1), "paid")
            self._payouts.append(payout)
            for txn in batch:
                txn.payout_id = payout.payout_id
            self._write(
                {
                    "t": "payout",
                    "id": payout.payout_id,
                    "amount": str(net.amount),
                    "currency": currency,
                    "arrival": payout.arrival_date.isoformat(),
                    "txns": [t.txn_id for t in batch],
                }
            )
        for currency, batch in carried.items():
            # Not paid out yet: waits, under its last day, for the next positive day.
            self._unpaid.setdefault((ended[-1][0], currency), []).extend(batch)

    def _keep_unpaid(self, txn: _BalanceTxn) -> None:
        key = (txn.created.astimezone(UTC).date(), txn.gross.currency)
        self._unpaid.setdefault(key, []).append(txn)

    def _replay_payout(self, record: dict[str, Any]) -> None:
        payout = Payout(
            record["id"],
            Money.of(record["amount"], record["currency"]),
            date.fromisoformat(record["arrival"]),
            "paid",
        )
        self._payouts.append(payout)
        paid = set(record["txns"])
        for key, txns in list(self._unpaid.items()):
            for txn in txns:
                if txn.txn_id in paid:
                    txn.payout_id = payout.payout_id
            left = [t for t in txns if not t.payout_id]
            if left:
                self._unpaid[key] = left
            else:
                del self._unpaid[key]

    def signed_callback(self, charge_key: str) -> tuple[bytes, dict[str, str]]:
        """The signed callback body and headers for a charge (also what ``settle_due`` sends)."""
        with self._lock:
            charge = self._charges[charge_key]
        body = json.dumps(
            {
                "type": f"charge.{charge.status.value.lower()}",
                "idempotency_key": charge.key,
                "provider_reference": charge.reference,
                "status": charge.status.value,
                "decline_code": charge.decline_code,
            }
        ).encode()
        message_id = new_id("msg")
        # Signed with wall-clock time: receivers reject messages older than 5 minutes.
        stamp = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": self._signer.sign(message_id, stamp, body),
        }
        return body, headers

    def _send_callback(self, charge: _Charge) -> None:
        if self._callback is None:
            return
        body, headers = self.signed_callback(charge.key)
        try:
            self._callback(body, headers)
        except Exception as exc:  # noqa: BLE001 - whatever the receiver failed with
            log.warning("sandbox callback for %s not taken (%s); sent again later", charge.key, exc)
            with self._lock:
                self._undelivered.append(charge)

    def _result(self, charge: _Charge) -> ProviderResult:
        decline = charge.decline_code if charge.status is ProviderStatus.FAILED else ""
        return ProviderResult(charge.status, charge.reference, decline)

    def _answer_or_time_out(self) -> None:
        if not self.answering:
            raise ProviderTimeout("the provider is not answering")
