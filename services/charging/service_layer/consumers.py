"""What charging consumes: ``UsageRated`` from rating, account states from accounts.

**UsageRated** (stream ``reckon:events:rating``; issue 4 item 7). Rating rates
imported CDRs; each event carries a batch of records (``records``: one dict per
record) or, from older producers, one record as the payload itself. Charging
needs of each record only (``OfflineUsage``): ``record_id``, ``account_id``,
``service``, ``amount`` (``{"amount": "1.23", "currency": "EUR"}``, exact
decimal string) and ``event_time``; ``quantity`` and ``unit`` are kept for the
log. The amount is debited from the account's money (prepaid and hybrid balances;
the credit line of postpaid accounts, i.e. unbilled usage against the limit),
even below zero: the usage already happened. Each record is charged once: a
redelivered event skips records whose ledger entry exists (``usage:<record_id>``)
and Redis remembers recent ones; the event id is marked processed in the same
transaction as the entries.

**UsageRerated** (same stream): rating re-rated an account's usage in a period
(``rerate_id``, ``account_id``, ``corrections``: ``record_id`` with ``old`` and ``new``
amounts). Charging applies, per currency, the sum of ``new - old`` over the records
it charged (a ``usage:<record_id>`` ledger entry; or rated at zero, which it had
nothing to charge for) as one ledger entry referenced ``rerate:<rerate_id>:<currency>``:
a debit when the price went up, a credit back when it went down, on the same money
buckets offline usage uses (so postpaid unbilled usage moves with it), thresholds
re-evaluated. Each re-rating is applied once: its reference is checked in the
ledger and Redis remembers it, and the event id is marked processed with the entries.

**AccountStateChanged** (stream ``reckon:events:accounts``): ``account_id``,
``to_state`` (ACTIVE, SUSPENDED, BARRED, CLOSED), ``reason`` and ``change_time``.
Written to SQL first (ordered by ``change_time``, so a late redelivery never
undoes a newer change), then to the live store, where the scripts refuse usage
in real time (CHG-11). ``AccountSuspended`` / ``AccountReactivated`` /
``AccountClosed`` / ``AccountBarred`` are understood too. ``AccountCreated`` and
``AccountUpdated`` set the account's billing mode, currency and credit limit
(``payment_mode``, ``currency_code``, ``credit_limit``) and state, in the order
they happened (``create_time`` / ``update_time``, kept as the account's
``facts_version``): an older one arriving late is skipped. Their ``customer_id`` is
kept too: a call carrying a customer scope reaches only that customer's accounts.

**Subscriber names** (ADR 0058): ``SubscriptionChanged.service_ids`` (keys such as
``msisdn:+31612345678``, ``sip:ada@example.com``, ``pin:482913``,
``code:BRIDGE-7``) and ``AccountCreated/Updated.external_ref`` (as ``ext:<ref>``)
name the event's account from the event's time on (a later event may move a name
to another account; an older one arriving late does not move it back), so credit
control can find the account a Subscription-Id names.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import InvalidOperation
from typing import Any, Final

from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    FinalUnitAction,
    StateChange,
    parse_state,
)
from services.charging.domain.instants import to_ms
from services.charging.domain.units import MAX_QUANTITY, money_unit, scaled_money
from services.charging.service_layer.commands import SetPolicy
from services.charging.service_layer.handlers import ChargingHandlers
from services.charging.service_layer.ports import BalanceStore, JournalEntry, SqlOnly
from services.charging.service_layer.rebuild import AccountLoader
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock, ensure_utc
from services.common.codes import external_key
from services.common.errors import NotFound
from services.common.events import EventEnvelope
from services.common.money import Money, MoneyError

log = logging.getLogger(__name__)

USAGE_CONSUMER: Final = "charging-usage"
STATE_CONSUMER: Final = "charging-account-states"
USAGE_EVENTS: Final = frozenset({"UsageRated", "UsageRerated"})
STATE_EVENTS: Final = frozenset(
    {
        "AccountStateChanged",
        "AccountSuspended",
        "AccountReactivated",
        "AccountClosed",
        "AccountBarred",
    }
)
POLICY_EVENTS: Final = frozenset({"AccountCreated", "AccountUpdated"})
# Subscriptions carry the numbers, SIP URIs, PINs and codes that name an account (ADR 0058).
SUBSCRIPTION_EVENTS: Final = frozenset({"SubscriptionChanged"})
ACCOUNT_EVENTS: Final = STATE_EVENTS | POLICY_EVENTS | SUBSCRIPTION_EVENTS
_STATE_OF_EVENT: Final = {
    "AccountSuspended": AccountState.SUSPENDED,
    "AccountReactivated": AccountState.ACTIVE,
    "AccountClosed": AccountState.CLOSED,
    "AccountBarred": AccountState.BARRED,
}


@dataclass(frozen=True, slots=True)
class OfflineUsage:
    """The fields of a rated usage record that charging uses."""

    record_id: str
    account_id: str
    service: str
    amount: Money
    event_time: datetime | None = None
    quantity: str = ""
    unit: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> OfflineUsage | None:
        try:
            money = raw["amount"]
            amount = Money.of(str(money["amount"]), str(money["currency"]))
            event_time = raw.get("event_time")
            return cls(
                record_id=str(raw["record_id"]),
                account_id=str(raw["account_id"]),
                service=str(raw.get("service", "")),
                amount=amount,
                event_time=ensure_utc(datetime.fromisoformat(event_time))
                if isinstance(event_time, str) and event_time
                else None,
                quantity=str(raw.get("quantity", "")),
                unit=str(raw.get("unit", "")),
            )
        except (KeyError, TypeError, ValueError, InvalidOperation, MoneyError):
            return None


def correction_of(raw: Mapping[str, Any]) -> tuple[str, Money, Money] | None:
    """(record id, old amount, new amount) of a ``UsageRerated`` correction."""
    try:
        old, new = raw["old"], raw["new"]
        return (
            str(raw["record_id"]),
            Money.of(str(old["amount"]), str(old["currency"])),
            Money.of(str(new["amount"]), str(new["currency"])),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation, MoneyError):
        return None


def usage_records(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    records = payload.get("records")
    if isinstance(records, list):
        return [r for r in records if isinstance(r, Mapping)]
    return [payload] if "record_id" in payload else []


class UsageConsumer:
    def __init__(
        self,
        handlers: ChargingHandlers,
        store: BalanceStore,
        uow_factory: Callable[[], ChargingUnitOfWork],
        clock: Clock,
        *,
        window_s: int,
        journal_drain_ms: int,
    ) -> None:
        self._handlers = handlers
        self._store = store
        self._uow_factory = uow_factory
        self._clock = clock
        self._window_s = window_s
        self._drain_ms = journal_drain_ms

    async def handle(self, envelope: EventEnvelope) -> None:
        if envelope.event_type not in USAGE_EVENTS:
            return
        if envelope.event_type == "UsageRerated":
            await self._rerated(envelope)
            return
        usages: list[OfflineUsage] = []
        for raw in usage_records(envelope.payload):
            usage = OfflineUsage.parse(raw)
            if usage is None:
                log.error(
                    "UsageRated %s has a record charging cannot read: %r", envelope.event_id, raw
                )
                continue
            if usage.amount.is_zero():
                continue
            usages.append(usage)
        by_account: dict[str, list[OfflineUsage]] = defaultdict(list)
        for usage in usages:
            by_account[usage.account_id].append(usage)
        entries: list[JournalEntry] = []
        touches: dict[str, int] = {}
        for account_id, batch in by_account.items():
            await self._charge_account(account_id, batch, entries, touches)
        await self._commit(envelope, entries, touches)

    async def _commit(
        self, envelope: EventEnvelope, entries: list[JournalEntry], touches: dict[str, int]
    ) -> None:
        inbox = SqlOnly(
            "inbox",
            {
                "consumer": USAGE_CONSUMER,
                "event_id": envelope.event_id,
                "processed_at": self._clock.now(),
            },
        )
        await self._handlers.writer.commit(entries, [inbox])
        for account_id, due in touches.items():
            await self._store.touch(account_id, due)

    async def _rerated(self, envelope: EventEnvelope) -> None:
        payload = envelope.payload
        account_id = str(payload.get("account_id") or envelope.aggregate_id or "")
        rerate_id = str(payload.get("rerate_id") or "")
        corrections = [c for c in payload.get("corrections") or [] if isinstance(c, Mapping)]
        entries: list[JournalEntry] = []
        touches: dict[str, int] = {}
        if not account_id or not rerate_id:
            log.error("UsageRerated %s names no account or re-rating", envelope.event_id)
        else:
            await self._apply_rerating(account_id, rerate_id, corrections, entries, touches)
        await self._commit(envelope, entries, touches)

    async def _apply_rerating(
        self,
        account_id: str,
        rerate_id: str,
        corrections: list[Mapping[str, Any]],
        entries: list[JournalEntry],
        touches: dict[str, int],
    ) -> None:
        parsed = [(c, correction_of(c)) for c in corrections]
        for raw, found in parsed:
            if found is None:
                log.error(
                    "UsageRerated %s has a correction charging cannot read: %r", rerate_id, raw
                )
        readable = [found for _, found in parsed if found is not None]
        references = [f"usage:{record_id}" for record_id, _, _ in readable]

        def charged() -> set[str]:
            with self._uow_factory() as uow:
                return uow.ledger.references_present(account_id, references)

        done = await asyncio.to_thread(charged)
        # Only what charging charged is corrected: a record it never debited (no bucket,
        # unknown account then) is not debited by its correction either.
        deltas: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        for record_id, old, new in readable:
            if f"usage:{record_id}" not in done and not old.is_zero():
                log.warning(
                    "re-rating %s: record %s was not charged by charging; not corrected",
                    rerate_id,
                    record_id,
                )
                continue
            try:
                new_amount, old_amount = scaled_money(new), scaled_money(old)
            except MoneyError:
                log.error(
                    "re-rating %s: record %s is finer than charging keeps money; not corrected",
                    rerate_id,
                    record_id,
                )
                continue
            deltas[new.currency] += new_amount
            deltas[old.currency] -= old_amount
            counts[new.currency] += 1
        changes = {currency: delta for currency, delta in sorted(deltas.items()) if delta}
        applied = await asyncio.to_thread(
            lambda: self._references_present(
                account_id, [f"rerate:{rerate_id}:{currency}" for currency in changes]
            )
        )
        for currency, delta in changes.items():
            reference = f"rerate:{rerate_id}:{currency}"
            if reference in applied:
                continue
            if abs(delta) > MAX_QUANTITY:
                log.error("re-rating %s: %s %s out of range", rerate_id, delta, currency)
                continue
            payload = {
                "a": "OFFLINE",
                "acct": account_id,
                "now": to_ms(self._clock.now()),
                "win": self._window_s,
                "jd": self._drain_ms,
                "off": {
                    "q": str(delta),
                    "cur": currency,
                    "svc": "",
                    "ref": reference,
                    "why": f"re-rating {rerate_id}: {counts[currency]} records",
                },
            }
            try:
                result = await self._handlers._run(
                    account_id,
                    lambda p=payload, key=f"q:rerate:{rerate_id}:{currency}": (  # type: ignore[misc]
                        self._store.event(account_id, key, p)
                    ),
                )
            except NotFound:
                log.warning("re-rating %s: account %s unknown to charging", rerate_id, account_id)
                return
            if result.status in ("NOBUCKET", "TOOBIG"):
                log.error(
                    "re-rating %s: account %s cannot take %s %s (%s); not applied",
                    rerate_id,
                    account_id,
                    delta,
                    currency,
                    result.status,
                )
                continue
            entries.extend(result.entries)
            if result.touch_ms:
                touches[account_id] = min(touches.get(account_id, result.touch_ms), result.touch_ms)

    def _references_present(self, account_id: str, references: list[str]) -> set[str]:
        with self._uow_factory() as uow:
            return uow.ledger.references_present(account_id, references)

    async def _charge_account(
        self,
        account_id: str,
        usages: list[OfflineUsage],
        entries: list[JournalEntry],
        touches: dict[str, int],
    ) -> None:
        references = [f"usage:{u.record_id}" for u in usages]

        def committed() -> set[str]:
            with self._uow_factory() as uow:
                return uow.ledger.references_present(account_id, references)

        done = await asyncio.to_thread(committed)
        for usage in usages:
            reference = f"usage:{usage.record_id}"
            if reference in done:
                continue
            try:
                amount = scaled_money(usage.amount)
            except MoneyError:
                log.error(
                    "usage %s: amount %s is finer than charging keeps money",
                    usage.record_id,
                    usage.amount,
                )
                continue
            if not 0 < amount <= MAX_QUANTITY:
                log.error("usage %s: amount %s out of range", usage.record_id, usage.amount)
                continue
            payload = {
                "a": "OFFLINE",
                "acct": account_id,
                "now": to_ms(self._clock.now()),
                "win": self._window_s,
                "jd": self._drain_ms,
                "off": {
                    "q": str(amount),
                    "cur": usage.amount.currency,
                    "svc": usage.service,
                    "ref": reference,
                },
            }
            try:
                result = await self._handlers._run(
                    account_id,
                    lambda p=payload, r=usage.record_id: self._store.event(  # type: ignore[misc]
                        account_id, f"q:usage:{r}", p
                    ),
                )
            except NotFound:
                log.warning(
                    "usage %s for account %s unknown to charging: not charged",
                    usage.record_id,
                    account_id,
                )
                return
            if result.status == "NOBUCKET":
                log.error(
                    "usage %s: account %s holds no %s bucket; not charged",
                    usage.record_id,
                    account_id,
                    usage.amount.currency,
                )
                continue
            entries.extend(result.entries)
            if result.touch_ms:
                touches[account_id] = min(touches.get(account_id, result.touch_ms), result.touch_ms)


def _instant(payload: Mapping[str, Any], envelope: EventEnvelope) -> datetime:
    """When the change happened: the payload's own time if it has one, else the envelope's."""
    for key in ("change_time", "update_time", "create_time", "changed_at"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            try:
                return ensure_utc(datetime.fromisoformat(value))
            except ValueError:
                continue
    return ensure_utc(envelope.occurred_at)


def policy_of(payload: Mapping[str, Any]) -> tuple[BillingMode, str, int] | None:
    """Billing mode, currency and credit limit (scaled) from AccountCreated/Updated facts."""
    mode_word = str(payload.get("payment_mode") or payload.get("billing_mode") or "").lower()
    currency = str(payload.get("currency_code") or payload.get("currency") or "")
    try:
        mode = BillingMode(mode_word)
        money_unit(currency)
    except (ValueError, MoneyError):
        return None
    limit = 0
    raw = payload.get("credit_limit")
    if mode is not BillingMode.PREPAID and isinstance(raw, Mapping):
        try:
            amount = Money.of(str(raw["amount"]), str(raw["currency"]))
            if amount.currency == currency and not amount.is_negative():
                limit = min(scaled_money(amount), MAX_QUANTITY)
        except (KeyError, ValueError, InvalidOperation, MoneyError):
            limit = 0
    return mode, currency, limit


class AccountStateConsumer:
    """Account facts from the accounts service: state (CHG-11) and billing mode (CHG-6).

    ``AccountCreated`` / ``AccountUpdated`` carry ``payment_mode`` (PREPAID, POSTPAID,
    HYBRID), ``currency_code``, ``credit_limit`` and ``state``: charging creates or
    updates the account's policy from them, keeping what only charging's admin call
    sets (low-balance threshold, final-unit action), so usage can be charged without
    an operator setting the policy by hand.
    """

    def __init__(
        self,
        store: BalanceStore,
        loader: AccountLoader,
        uow_factory: Callable[[], ChargingUnitOfWork],
        clock: Clock,
        handlers: ChargingHandlers | None = None,
    ) -> None:
        self._store = store
        self._loader = loader
        self._uow_factory = uow_factory
        self._clock = clock
        self._handlers = handlers

    @staticmethod
    def change_of(envelope: EventEnvelope) -> StateChange | None:
        payload = envelope.payload
        account_id = str(payload.get("account_id") or envelope.aggregate_id or "")
        if not account_id:
            return None
        state = _STATE_OF_EVENT.get(envelope.event_type)
        if state is None:
            for key in ("to_state", "to", "new_state", "state", "status"):
                value = payload.get(key)
                if isinstance(value, str) and value:
                    state = parse_state(value)
                    break
        if state is None:
            return None
        return StateChange(
            account_id, state, _instant(payload, envelope), str(payload.get("reason", ""))
        )

    async def handle(self, envelope: EventEnvelope) -> None:
        if envelope.event_type not in ACCOUNT_EVENTS:
            return
        await self._learn_names(envelope)
        if envelope.event_type in SUBSCRIPTION_EVENTS:
            return
        if envelope.event_type in POLICY_EVENTS:
            await self._apply_policy(envelope)
        change = self.change_of(envelope)
        if change is None:
            if envelope.event_type in STATE_EVENTS:
                log.warning(
                    "%s %s names no account or state charging knows; ignored",
                    envelope.event_type,
                    envelope.event_id,
                )
            return
        await self.apply(change, envelope.event_id)

    async def _learn_names(self, envelope: EventEnvelope) -> None:
        """The names the event gives its account: service identifiers, external reference."""
        payload = envelope.payload
        account_id = str(payload.get("account_id") or "")
        if self._handlers is None or not account_id or len(account_id) > 64:
            return
        names: list[str] = []
        if envelope.event_type in SUBSCRIPTION_EVENTS:
            raw = payload.get("service_ids")
            if isinstance(raw, list):
                names = [key for key in raw if isinstance(key, str) and 0 < len(key) <= 220]
        else:
            reference = payload.get("external_ref")
            if isinstance(reference, str) and reference:
                names = [external_key(reference)]
        if names:
            await self._handlers.subscribers.learn(
                names, account_id, to_ms(ensure_utc(envelope.occurred_at)), self._clock.now()
            )

    async def _apply_policy(self, envelope: EventEnvelope) -> None:
        account_id = str(envelope.payload.get("account_id") or envelope.aggregate_id or "")
        facts = policy_of(envelope.payload)
        if self._handlers is None or not account_id or facts is None:
            return
        # Applied in the order the facts changed, not the order they arrive: an older
        # AccountUpdated (redelivered, or overtaken) never overwrites a newer one.
        version = to_ms(_instant(envelope.payload, envelope))

        def applied_version() -> int | None:
            with self._uow_factory() as uow:
                return uow.accounts.facts_version(account_id)

        applied = await asyncio.to_thread(applied_version)
        if applied is not None and applied > version:
            log.info(
                "%s %s for %s is older than the facts applied; skipped",
                envelope.event_type,
                envelope.event_id,
                account_id,
            )
            return
        await self._set_policy(account_id, facts)

        customer_id = str(envelope.payload.get("customer_id") or "")

        def record_version() -> None:
            with self._uow_factory() as uow:
                uow.accounts.record_facts_version(account_id, version)
                if 0 < len(customer_id) <= 64:
                    # Whose account it is: checked when a call carries a customer scope.
                    uow.accounts.record_customer(account_id, customer_id)
                uow.commit()

        await asyncio.to_thread(record_version)

    async def _set_policy(self, account_id: str, facts: tuple[BillingMode, str, int]) -> None:
        assert self._handlers is not None
        mode, currency, limit = facts
        try:
            current = (await self._handlers.get_policy(account_id)).policy
        except NotFound:
            current = None
        if current is not None and (current.mode, current.currency, current.credit_limit) == (
            mode,
            currency,
            limit,
        ):
            return
        low = current.low_balance if current and current.currency == currency else None
        policy = AccountPolicy(
            account_id=account_id,
            mode=mode,
            currency=currency,
            credit_limit=limit,
            low_balance=low,
            final_unit_action=current.final_unit_action if current else FinalUnitAction.TERMINATE,
            redirect_address=current.redirect_address if current else "",
            restriction_filter_id=current.restriction_filter_id if current else "",
        )
        await self._handlers.set_policy(SetPolicy(policy))

    async def apply(self, change: StateChange, event_id: str = "") -> None:
        def record() -> bool:
            with self._uow_factory() as uow:
                if event_id:
                    uow.mark_processed(STATE_CONSUMER, event_id)
                uow.accounts.record_state(change, self._clock.now())
                known = uow.accounts.get(change.account_id) is not None
                uow.commit()
                return known

        # SQL first: a rebuilt Redis reads it. Redelivery re-applies (versioned, harmless).
        known = await asyncio.to_thread(record)
        if not known:
            return
        status = await self._store.set_state(change.account_id, change.state.value, change.version)
        if status == "NOACCOUNT":
            await self._loader.ensure_loaded(change.account_id)
            await self._store.set_state(change.account_id, change.state.value, change.version)
