"""Subscriptions: start, plan changes (now or at the cycle end), add-ons, cancellation.

A ``Subscription`` belongs to an account (``accounts``) and grows only while the
account is ACTIVE; changes timed ``END_OF_CYCLE`` wait as a pending plan change or
a cancellation at period end and are applied when due (``apply_due_changes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.accounts.domain.accounts import Account
from services.accounts.domain.billing_cycle import BillingPeriod, next_cycle_start
from services.accounts.domain.events import SubscriptionChanged, SubscriptionChangeKind
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


class SubscriptionState(StrEnum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"


class ChangeTiming(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    END_OF_CYCLE = "END_OF_CYCLE"


# -- subscriptions ----------------------------------------------------------------------------


@dataclass(eq=False)
class AddOn:
    add_on_code: str
    quantity: int
    add_time: datetime


@dataclass(frozen=True)
class PendingPlanChange:
    plan_code: str
    effective_time: datetime


@dataclass(eq=False)
class Subscription:
    subscription_id: str
    account_id: str
    plan_code: str
    state: SubscriptionState
    start_time: datetime
    create_time: datetime
    update_time: datetime
    add_ons: list[AddOn] = field(default_factory=list)
    # A plan change scheduled for the next cycle boundary (both set or both None).
    pending_plan_code: str | None = None
    pending_plan_effective_time: datetime | None = None
    # When it ended, or will end when cancel_at_period_end is set.
    cancel_time: datetime | None = None
    cancel_at_period_end: bool = False
    # Service identifier keys (``msisdn:+31612345678``, ``sip:...``), one a line.
    service_ids: str = ""

    @classmethod
    def start(
        cls,
        *,
        subscription_id: str,
        account: Account,
        plan_code: str,
        now: datetime,
        start_time: datetime | None = None,
        service_ids: Sequence[str] = (),
    ) -> tuple[Subscription, SubscriptionChanged]:
        """A new ACTIVE subscription from ``start_time`` (default now; may be in the past
        for a migration or late usage, never in the future)."""
        account.check_subscriptions_can_grow()
        start = now if start_time is None else start_time
        if start > now:
            raise InvalidArgument.field(
                "subscription.start_time", "must not be in the future (it may be in the past)"
            )
        subscription = cls(
            subscription_id=subscription_id,
            account_id=account.account_id,
            plan_code=plan_code,
            state=SubscriptionState.ACTIVE,
            start_time=start,
            create_time=now,
            update_time=now,
            service_ids="\n".join(service_ids),
        )
        return subscription, subscription._event(
            account, SubscriptionChangeKind.CREATED, start, new_plan=plan_code
        )

    @property
    def service_id_keys(self) -> tuple[str, ...]:
        return tuple(key for key in self.service_ids.split("\n") if key)

    @property
    def pending_plan_change(self) -> PendingPlanChange | None:
        if self.pending_plan_code is None or self.pending_plan_effective_time is None:
            return None
        return PendingPlanChange(self.pending_plan_code, self.pending_plan_effective_time)

    def current_period(self, account: Account, now: datetime) -> BillingPeriod | None:
        """The bill cycle running now, from the account's cycle day; None once cancelled."""
        if self.state is SubscriptionState.CANCELLED:
            return None
        return account.billing_period(now)

    def change_plan(
        self, account: Account, plan_code: str, timing: ChangeTiming, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_grow()
        if self.cancel_at_period_end:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} ends at the end of this cycle",
                reason="CANCELLATION_SCHEDULED",
                metadata={"subscription_id": self.subscription_id},
            )
        if plan_code == self.plan_code:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} is already on plan {plan_code}",
                reason="PLAN_UNCHANGED",
                metadata={"subscription_id": self.subscription_id, "plan_code": plan_code},
            )
        old_plan = self.plan_code
        self.update_time = now
        if timing is ChangeTiming.IMMEDIATE:
            self.plan_code = plan_code
            self._drop_pending_plan_change()  # superseded by this change
            return self._event(account, SubscriptionChangeKind.PLAN_CHANGED, now, old_plan=old_plan)
        boundary = next_cycle_start(now, account.bill_cycle_day, account.time_zone)
        # A later END_OF_CYCLE request replaces the one already scheduled.
        self.pending_plan_code = plan_code
        self.pending_plan_effective_time = boundary
        return self._event(
            account,
            SubscriptionChangeKind.PLAN_CHANGE_SCHEDULED,
            boundary,
            old_plan=old_plan,
            new_plan=plan_code,
        )

    def add_add_on(
        self, account: Account, add_on_code: str, quantity: int, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_grow()
        if self._find_add_on(add_on_code) is not None:
            raise AlreadyExists(
                f"subscription {self.subscription_id} already has add-on {add_on_code}",
                reason="ADD_ON_ALREADY_ACTIVE",
                metadata={"subscription_id": self.subscription_id, "add_on_code": add_on_code},
            )
        self.add_ons.append(AddOn(add_on_code=add_on_code, quantity=quantity, add_time=now))
        self.update_time = now
        return self._event(
            account,
            SubscriptionChangeKind.ADDON_ADDED,
            now,
            add_on_code=add_on_code,
            add_on_quantity=quantity,
        )

    def remove_add_on(
        self, account: Account, add_on_code: str, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_shrink()
        add_on = self._find_add_on(add_on_code)
        if add_on is None:
            raise NotFound(
                f"subscription {self.subscription_id} has no add-on {add_on_code}",
                reason="ADD_ON_NOT_FOUND",
                metadata={"subscription_id": self.subscription_id, "add_on_code": add_on_code},
            )
        self.add_ons.remove(add_on)
        self.update_time = now
        return self._event(
            account,
            SubscriptionChangeKind.ADDON_REMOVED,
            now,
            add_on_code=add_on_code,
            add_on_quantity=add_on.quantity,
        )

    def cancel(
        self, account: Account, timing: ChangeTiming, now: datetime, reason: str = ""
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_shrink()
        if timing is ChangeTiming.IMMEDIATE:
            return self._end(account, now, reason)
        if self.cancel_at_period_end:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} already ends at the end of this cycle",
                reason="CANCELLATION_SCHEDULED",
                metadata={"subscription_id": self.subscription_id},
            )
        boundary = next_cycle_start(now, account.bill_cycle_day, account.time_zone)
        self.cancel_at_period_end = True
        self.cancel_time = boundary
        self._drop_pending_plan_change()  # nothing to change to once it ends at the boundary
        self.update_time = now
        return self._event(
            account, SubscriptionChangeKind.CANCEL_SCHEDULED, boundary, reason=reason
        )

    def end_with_account(self, account: Account, now: datetime) -> SubscriptionChanged:
        """Cancel at once because the account closed (whatever the account's state allows)."""
        self._check_active()
        return self._end(account, now, f"account closed: {account.state_reason}")

    def is_due(self, now: datetime) -> bool:
        """A scheduled plan change or cancellation whose time has come."""
        if self.state is not SubscriptionState.ACTIVE:
            return False
        pending = self.pending_plan_change
        if pending is not None and pending.effective_time <= now:
            return True
        return bool(
            self.cancel_at_period_end and self.cancel_time is not None and self.cancel_time <= now
        )

    def apply_due_changes(self, account: Account, now: datetime) -> list[SubscriptionChanged]:
        """Carry out what was scheduled, effective at the scheduled time (not ``now``),
        so invoicing prorates correctly however late the scheduler runs."""
        changes: list[SubscriptionChanged] = []
        pending = self.pending_plan_change
        if self.state is SubscriptionState.ACTIVE and pending and pending.effective_time <= now:
            old_plan = self.plan_code
            self.plan_code = pending.plan_code
            self._drop_pending_plan_change()
            self.update_time = now
            changes.append(
                self._event(
                    account,
                    SubscriptionChangeKind.PLAN_CHANGED,
                    pending.effective_time,
                    old_plan=old_plan,
                    reason="scheduled plan change",
                )
            )
        if (
            self.state is SubscriptionState.ACTIVE
            and self.cancel_at_period_end
            and self.cancel_time is not None
            and self.cancel_time <= now
        ):
            self.state = SubscriptionState.CANCELLED
            self.update_time = now
            changes.append(
                self._event(
                    account,
                    SubscriptionChangeKind.CANCELLED,
                    self.cancel_time,
                    reason="scheduled cancellation",
                )
            )
        return changes

    # -- internals --------------------------------------------------------------------------
    def _check_active(self) -> None:
        if self.state is SubscriptionState.CANCELLED:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} is cancelled",
                reason="SUBSCRIPTION_CANCELLED",
                metadata={"subscription_id": self.subscription_id},
            )

    def _end(self, account: Account, at: datetime, reason: str) -> SubscriptionChanged:
        self.state = SubscriptionState.CANCELLED
        self.cancel_time = at
        self.cancel_at_period_end = False
        self._drop_pending_plan_change()
        self.update_time = at
        return self._event(account, SubscriptionChangeKind.CANCELLED, at, reason=reason)

    def _drop_pending_plan_change(self) -> None:
        self.pending_plan_code = None
        self.pending_plan_effective_time = None

    def _find_add_on(self, add_on_code: str) -> AddOn | None:
        return next((a for a in self.add_ons if a.add_on_code == add_on_code), None)

    def _event(
        self,
        account: Account,
        kind: SubscriptionChangeKind,
        effective: datetime,
        *,
        old_plan: str | None = None,
        new_plan: str | None = None,
        add_on_code: str = "",
        add_on_quantity: int = 0,
        reason: str = "",
    ) -> SubscriptionChanged:
        period = account.billing_period(effective)
        return SubscriptionChanged(
            subscription_id=self.subscription_id,
            account_id=account.account_id,
            customer_id=account.customer_id,
            kind=kind,
            plan_code=self.plan_code,
            old_plan_code=self.plan_code if old_plan is None else old_plan,
            new_plan_code=self.plan_code if new_plan is None else new_plan,
            add_on_code=add_on_code,
            add_on_quantity=add_on_quantity,
            effective_time=effective,
            period_start=period.start,
            period_end=period.end,
            currency_code=account.currency_code,
            time_zone=account.time_zone,
            bill_cycle_day=account.bill_cycle_day,
            reason=reason,
            service_ids=self.service_id_keys,
        )
