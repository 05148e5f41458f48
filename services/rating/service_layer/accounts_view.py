"""Rating's local view of accounts, kept from the accounts service's events.

Rating does not own accounts and never reads accounts' tables; it needs, for each
account it rates, the customer (for price packages), currency, time zone (time
bands), tax region, group, and which plan was subscribed when. The accounts
service publishes those facts on ``reckon:events:accounts``; this handler folds
them into ``known_accounts`` and ``plan_assignments``. Each event is applied at
most once (``mark_processed`` in the same transaction), so redelivery is harmless.

Fields follow ``services/accounts/domain/events.py`` (``currency_code``,
``group_id``, ``state``; ``SubscriptionChanged`` with ``kind``, ``plan_code`` and
``effective_time``) and are read tolerantly (older names too), because the two
services evolve separately. Scheduled changes are not applied: accounts publishes
the change again (``PLAN_CHANGED`` / ``CANCELLED``) when it takes effect. Add-on
changes leave the plan. An event without an account id is ignored with a warning
rather than blocking the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from services.common.clock import Clock, ensure_utc
from services.common.codes import EXTERNAL_PREFIX
from services.common.events import EventEnvelope
from services.rating.service_layer.model import KnownAccount, PlanAssignment
from services.rating.service_layer.unit_of_work import RatingUnitOfWork

log = logging.getLogger(__name__)

CONSUMER: Final = "rating-accounts-view"
ACCOUNT_EVENTS: Final = frozenset(
    {
        "AccountCreated",
        "AccountUpdated",
        "AccountChanged",
        "AccountStateChanged",
        "AccountSuspended",
        "AccountReactivated",
        "AccountClosed",
    }
)
SUBSCRIPTION_EVENTS: Final = frozenset(
    {
        "SubscriptionCreated",
        "SubscriptionChanged",
        "PlanChanged",
        "SubscriptionCancelled",
        "SubscriptionCanceled",
    }
)
HANDLED_EVENTS: Final = ACCOUNT_EVENTS | SUBSCRIPTION_EVENTS
# SubscriptionChanged kinds: one ends the plan; the others named here do not change the
# plan in force (scheduled changes come again, as PLAN_CHANGED/CANCELLED, when they apply).
_CANCELLED_KINDS: Final = frozenset({"CANCELLED"})
_IGNORED_KINDS: Final = frozenset(
    {"PLAN_CHANGE_SCHEDULED", "CANCEL_SCHEDULED", "ADDON_ADDED", "ADDON_REMOVED"}
)
_STATUS_OF_EVENT: Final = {
    "AccountSuspended": "suspended",
    "AccountReactivated": "active",
    "AccountClosed": "closed",
}


def _text(payload: Mapping[str, Any], *keys: str, default: str = "") -> str:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return default


def _cycle_day(payload: Mapping[str, Any], default: int) -> int:
    value = payload.get("bill_cycle_day")
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 31:
        return value
    return default


def _instant(payload: Mapping[str, Any], keys: tuple[str, ...], fallback: datetime) -> datetime:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str) and value:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                return ensure_utc(parsed.replace(tzinfo=fallback.tzinfo))
            return ensure_utc(parsed)
    return ensure_utc(fallback)


def apply_account_event(
    uow_factory: Callable[[], RatingUnitOfWork], clock: Clock, envelope: EventEnvelope
) -> bool:
    """Fold one accounts event into the view; False when it was seen before or ignored."""
    if envelope.event_type not in HANDLED_EVENTS:
        return False
    payload = envelope.payload
    account_id = _text(payload, "account_id") or envelope.aggregate_id
    if not account_id:
        log.warning("%s %s has no account_id; ignored", envelope.event_type, envelope.event_id)
        return False
    with uow_factory() as uow:
        if not uow.mark_processed(CONSUMER, envelope.event_id):
            return False
        account = uow.accounts.get(account_id)
        if envelope.event_type in ACCOUNT_EVENTS:
            _fold_account(uow, account, account_id, envelope, clock)
        else:
            _fold_subscription(uow, account, account_id, envelope, clock)
        uow.commit()
    return True


def _fold_account(
    uow: RatingUnitOfWork,
    account: KnownAccount | None,
    account_id: str,
    envelope: EventEnvelope,
    clock: Clock,
) -> None:
    payload = envelope.payload
    status = _STATUS_OF_EVENT.get(envelope.event_type) or _text(
        payload, "state", "to_state", "status"
    )
    if account is None:
        account = KnownAccount(
            account_id=account_id,
            customer_id=_text(payload, "customer_id"),
            currency=_text(payload, "currency_code", "currency"),
            time_zone=_text(payload, "time_zone", "timezone", default="UTC"),
            tax_region=_text(payload, "tax_region"),
            group_code=_text(payload, "group_id", "group", "group_code", "reseller_id"),
            status=status or "active",
            updated_at=clock.now(),
            bill_cycle_day=_cycle_day(payload, 1),
        )
        uow.accounts.add(account)
    else:
        # Only fields the event carries change: a state event does not erase the zone.
        account.customer_id = _text(payload, "customer_id", default=account.customer_id)
        account.currency = _text(payload, "currency_code", "currency", default=account.currency)
        account.time_zone = _text(payload, "time_zone", "timezone", default=account.time_zone)
        account.tax_region = _text(payload, "tax_region", default=account.tax_region)
        account.group_code = _text(
            payload, "group_id", "group", "group_code", "reseller_id", default=account.group_code
        )
        account.status = status or account.status
        account.bill_cycle_day = _cycle_day(payload, account.bill_cycle_day)
        account.updated_at = clock.now()
    # The operator's references (issue 9 item 12): CDRs and price packages may use them.
    account.customer_ref = _text(payload, "customer_external_ref", default=account.customer_ref)
    reference = _text(payload, "external_ref")
    if reference:
        uow.accounts.set_alias(EXTERNAL_PREFIX + reference, account_id)
    plan = _text(payload, "plan_code", "plan")
    if plan and envelope.event_type == "AccountCreated":
        uow.accounts.add_assignment(
            PlanAssignment(
                account_id,
                plan,
                _instant(payload, ("effective_from", "create_time"), envelope.occurred_at),
            )
        )


def _fold_subscription(
    uow: RatingUnitOfWork,
    account: KnownAccount | None,
    account_id: str,
    envelope: EventEnvelope,
    clock: Clock,
) -> None:
    payload = envelope.payload
    kind = _text(payload, "kind").upper()
    if kind in _IGNORED_KINDS:
        return
    cancelled = kind in _CANCELLED_KINDS or envelope.event_type in (
        "SubscriptionCancelled",
        "SubscriptionCanceled",
    )
    plan = "" if cancelled else _text(payload, "plan_code", "new_plan_code", "plan", "new_plan")
    effective = _instant(
        payload,
        ("effective_time", "effective_from", "effective_at", "start_time", "changed_at"),
        envelope.occurred_at,
    )
    if account is None:
        # Subscriptions can arrive before the account's own event: keep a stub to fill later.
        uow.accounts.add(KnownAccount(account_id, "", "", "UTC", "", "", "active", clock.now()))
    service_ids = payload.get("service_ids")
    if isinstance(service_ids, list) and not cancelled:
        for key in service_ids:
            if isinstance(key, str) and 0 < len(key) <= 220:
                uow.accounts.set_alias(key, account_id)
    uow.accounts.add_assignment(
        PlanAssignment(account_id, plan, effective, _text(payload, "subscription_id")[:64])
    )
