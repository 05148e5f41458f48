"""Use cases of the accounts service: one function per command or query.

Each handler opens its unit of work, loads aggregates through the repositories,
lets the domain decide, publishes the resulting events and commits, so the
change, its events (outbox) and its idempotency key are durable together or not
at all. A handler that raises has written nothing.

Idempotency (AIP-155): a command whose ``request_id`` was seen before answers
with the resource the first request produced and changes nothing; the scope of
a key is the command's name, so the same key may serve different methods.

Scheduled subscription changes (END_OF_CYCLE plan changes and cancellations)
are applied by ``apply_due_subscription_changes`` (run periodically) and by any
handler that loads a subscription on which one has fallen due, so a reader
never sees a subscription that should already have changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar

from services.accounts.domain.events import AccountStateChanged
from services.accounts.domain.model import (
    Account,
    Customer,
    StateChange,
    Subscription,
    new_referral_code,
)
from services.accounts.service_layer.commands import (
    AddAddOn,
    BarAccount,
    CancelSubscription,
    ChangeAccountState,
    ChangePlan,
    CloseAccount,
    Command,
    CreateAccount,
    CreateCustomer,
    CreateSubscription,
    GetAccount,
    GetCustomer,
    GetSubscription,
    ListAccounts,
    ListAccountStateHistory,
    ListCustomers,
    ListSubscriptions,
    Page,
    RecordReferral,
    RemoveAddOn,
    RestoreAccount,
    SubscriptionView,
    SuspendAccount,
    UpdateAccount,
    UpdateCustomer,
)
from services.accounts.service_layer.plan_catalog import PlanCatalog
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.codes import EXTERNAL_PREFIX
from services.common.errors import (
    Aborted,
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.common.ids import new_id

log = logging.getLogger(__name__)

# The consumer group that credits referrers; also its inbox name (processed_events).
REFERRALS_CONSUMER: Final = "accounts-referrals"
# Random codes rarely collide; a few retries make a collision-caused failure negligible.
_REFERRAL_CODE_ATTEMPTS: Final = 5
# Far deeper than any real hierarchy; bounds the walk if data were ever corrupt.
_MAX_HIERARCHY_DEPTH: Final = 64

T = TypeVar("T")


# -- customers ------------------------------------------------------------------------------
def create_customer(cmd: CreateCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _customer(uow, replayed)
        referrer = None
        if cmd.referred_by:
            referrer = uow.customers.get_by_referral_code(cmd.referred_by)
            if referrer is None:
                raise InvalidArgument.field(
                    "customer.referred_by", "is not the referral code of any customer"
                )
        _check_ref_free(uow.customers.get, cmd.external_ref, "customer.external_ref")
        customer, created = Customer.register(
            customer_id=new_id("cus"),
            display_name=cmd.display_name,
            email=cmd.email,
            phone_number=cmd.phone_number,
            language_code=cmd.language_code,
            reseller_id=cmd.reseller_id,
            group_id=cmd.group_id,
            referral_code=_unused_referral_code(uow),
            referrer=referrer,
            now=uow.clock.now(),
            external_ref=cmd.external_ref,
            vat_id=cmd.vat_id,
        )
        uow.customers.add(customer)
        uow.publish(created)
        _remember(uow, cmd, customer.customer_id)
        uow.commit()
    return customer


def get_customer(query: GetCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        return _customer(uow, query.customer_id)


def list_customers(query: ListCustomers, uow: AccountsUnitOfWork) -> Page[Customer]:
    with uow:
        found = uow.customers.list(
            reseller_id=query.reseller_id,
            group_id=query.group_id,
            after=query.after,
            limit=query.limit + 1,
        )
        return _page(found, query.limit, lambda c: c.customer_id)


def update_customer(cmd: UpdateCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _customer(uow, replayed)
        customer = _customer(uow, cmd.customer_id)
        updated = customer.revise(cmd.revision, uow.clock.now())
        if updated is not None:
            uow.publish(updated)
        _remember(uow, cmd, customer.customer_id)
        uow.commit()
    return customer


def record_referral(cmd: RecordReferral, uow: AccountsUnitOfWork) -> bool:
    """Credit the referrer once per event, however often the event is delivered."""
    with uow:
        if not uow.mark_processed(REFERRALS_CONSUMER, cmd.event_id):
            return False
        referrer = uow.customers.get(cmd.referrer_customer_id)
        if referrer is None:
            # Customers are never deleted, so the event is wrong; retrying cannot help.
            log.warning(
                "referral by unknown customer %s (event %s) ignored",
                cmd.referrer_customer_id,
                cmd.event_id,
            )
            uow.commit()
            return False
        referrer.credit_referral(uow.clock.now())
        uow.commit()
    return True


# -- accounts -------------------------------------------------------------------------------
def create_account(cmd: CreateAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        customer = _customer(uow, cmd.customer_id)
        parent_chain = _parent_chain(uow, cmd.parent_account_id)
        _check_ref_free(uow.accounts.get, cmd.external_ref, "account.external_ref")
        account, created = Account.open(
            account_id=new_id("acc"),
            customer=customer,
            display_name=cmd.display_name,
            currency_code=cmd.currency_code,
            time_zone=cmd.time_zone,
            bill_cycle_day=cmd.bill_cycle_day,
            tax_region=cmd.tax_region,
            payment_terms_days=cmd.payment_terms_days,
            payment_mode=cmd.payment_mode,
            credit_limit=cmd.credit_limit,
            parent_chain=parent_chain,
            now=uow.clock.now(),
            external_ref=cmd.external_ref,
        )
        uow.accounts.add(account)
        uow.publish(created)
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def get_account(query: GetAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        return _account(uow, query.account_id)


def list_accounts(query: ListAccounts, uow: AccountsUnitOfWork) -> Page[Account]:
    with uow:
        found = uow.accounts.list(
            customer_id=query.customer_id,
            state=query.state,
            reseller_id=query.reseller_id,
            group_id=query.group_id,
            after=query.after,
            limit=query.limit + 1,
        )
        return _page(found, query.limit, lambda a: a.account_id)


def update_account(cmd: UpdateAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        customer = _customer(uow, account.customer_id)
        revision = cmd.revision
        new_parent = revision.parent_account_id if "parent_account_id" in revision.fields else None
        updated = account.revise(
            revision, customer, _parent_chain(uow, new_parent), uow.clock.now()
        )
        if updated is not None:
            uow.publish(updated)
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def suspend_account(cmd: SuspendAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.suspend)


def bar_account(cmd: BarAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.bar)


def restore_account(cmd: RestoreAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.restore)


def close_account(cmd: CloseAccount, uow: AccountsUnitOfWork) -> Account:
    """Close the account and, in the same transaction, cancel its active subscriptions."""
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        now = uow.clock.now()
        uow.publish(account.close(cmd.reason, now))
        for subscription in uow.subscriptions.active_of_account(account.account_id):
            uow.publish(subscription.end_with_account(account, now))
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def list_account_state_history(
    query: ListAccountStateHistory, uow: AccountsUnitOfWork
) -> Page[StateChange]:
    with uow:
        account = _account(uow, query.account_id)
        later = [c for c in account.state_changes if c.sequence > query.after_sequence]
        later.sort(key=lambda c: c.sequence)
        return _page(later[: query.limit + 1], query.limit, lambda c: str(c.sequence))


# -- subscriptions --------------------------------------------------------------------------
def create_subscription(
    cmd: CreateSubscription, uow: AccountsUnitOfWork, *, catalog: PlanCatalog
) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_plan(cmd.plan_code):
            raise _unknown_plan("subscription.plan_code")
        account = _account(uow, cmd.account_id)
        now = uow.clock.now()
        taken = uow.subscriptions.service_id_owners(cmd.service_ids)
        if taken:
            key, owner = sorted(taken.items())[0]
            raise AlreadyExists(
                f"service identifier {key} already belongs to subscription {owner}",
                reason="SERVICE_ID_TAKEN",
                metadata={"service_id": key, "subscription_id": owner},
            )
        subscription, created = Subscription.start(
            subscription_id=new_id("sub"),
            account=account,
            plan_code=cmd.plan_code,
            now=now,
            start_time=cmd.start_time,
            service_ids=cmd.service_ids,
        )
        uow.subscriptions.add(subscription)
        uow.subscriptions.claim_service_ids(subscription)
        uow.accounts.guard(account)
        uow.publish(created)
        _remember(uow, cmd, subscription.subscription_id)
        uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))


def _check_ref_free(get: Callable[[str], object | None], ref: str | None, field: str) -> None:
    """External references are unique (issue 9 item 12)."""
    if ref and get(EXTERNAL_PREFIX + ref) is not None:
        raise AlreadyExists(
            f"external reference {ref!r} is already used",
            reason="EXTERNAL_REF_TAKEN",
            metadata={"field": field, "external_ref": ref},
        )


def _unknown_plan(field: str) -> InvalidArgument:
    return InvalidArgument(
        FieldViolation(field, "is not a plan on sale in the catalog"), reason="UNKNOWN_PLAN"
    )


def get_subscription(query: GetSubscription, uow: AccountsUnitOfWork) -> SubscriptionView:
    def read() -> SubscriptionView:
        with uow:
            return _subscription_view(uow, query.subscription_id, commit_due=True)

    return _retry_once_if_aborted(read)


def list_subscriptions(query: ListSubscriptions, uow: AccountsUnitOfWork) -> Page[SubscriptionView]:
    def read() -> Page[SubscriptionView]:
        with uow:
            found = uow.subscriptions.list(
                account_id=query.account_id,
                state=query.state,
                after=query.after,
                limit=query.limit + 1,
            )
            page = _page(found, query.limit, lambda s: s.subscription_id)
            now = uow.clock.now()
            views = []
            applied = False
            for subscription in page.items:
                account = _account(uow, subscription.account_id)
                applied |= _apply_due(uow, subscription, account, now)
                views.append(
                    SubscriptionView(subscription, subscription.current_period(account, now))
                )
            if applied:
                uow.commit()
            return Page(views, page.next_after)

    return _retry_once_if_aborted(read)


def change_plan(
    cmd: ChangePlan, uow: AccountsUnitOfWork, *, catalog: PlanCatalog
) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_plan(cmd.plan_code):
            raise _unknown_plan("plan_code")
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.change_plan(account, cmd.plan_code, cmd.timing, now))
        return _finish_change(uow, cmd, subscription, account, now)


def add_add_on(cmd: AddAddOn, uow: AccountsUnitOfWork, *, catalog: PlanCatalog) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_add_on(cmd.add_on_code):
            raise InvalidArgument(
                FieldViolation("add_on_code", "is not an add-on of the catalog"),
                reason="UNKNOWN_ADD_ON",
            )
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.add_add_on(account, cmd.add_on_code, cmd.quantity, now))
        return _finish_change(uow, cmd, subscription, account, now)


def remove_add_on(cmd: RemoveAddOn, uow: AccountsUnitOfWork) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.remove_add_on(account, cmd.add_on_code, now))
        return _finish_change(uow, cmd, subscription, account, now)


def cancel_subscription(cmd: CancelSubscription, uow: AccountsUnitOfWork) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.cancel(account, cmd.timing, now))
        return _finish_change(uow, cmd, subscription, account, now)


def apply_due_subscription_changes(uow: AccountsUnitOfWork, *, limit: int = 100) -> int:
    """Apply scheduled plan changes and cancellations that have fallen due.

    One transaction per subscription (one aggregate per transaction); returns how
    many subscriptions changed. A subscription a concurrent call changed first is
    skipped: whoever won applied it, or the next run will.
    """
    with uow:
        due = list(uow.subscriptions.due_ids(uow.clock.now(), limit))
    applied = 0
    for subscription_id in due:
        try:
            with uow:
                subscription = uow.subscriptions.get(subscription_id)
                if subscription is None:
                    continue
                account = _account(uow, subscription.account_id)
                if _apply_due(uow, subscription, account, uow.clock.now()):
                    uow.commit()
                    applied += 1
        except Aborted:
            log.info("due change of %s applied concurrently; skipped", subscription_id)
    return applied


# -- helpers --------------------------------------------------------------------------------
def _scope(cmd: Command) -> str:
    return type(cmd).__name__


def _replayed(uow: AccountsUnitOfWork, cmd: Command) -> str | None:
    return uow.replayed_resource(_scope(cmd), cmd.request_id, cmd.fingerprint)


def _remember(uow: AccountsUnitOfWork, cmd: Command, resource_id: str) -> None:
    uow.remember_request(_scope(cmd), cmd.request_id, cmd.fingerprint, resource_id)


def _customer(uow: AccountsUnitOfWork, customer_id: str) -> Customer:
    customer = uow.customers.get(customer_id)
    if customer is None:
        raise NotFound(
            f"customer {customer_id} not found",
            reason="CUSTOMER_NOT_FOUND",
            metadata={"customer_id": customer_id},
        )
    return customer


def _account(uow: AccountsUnitOfWork, account_id: str) -> Account:
    account = uow.accounts.get(account_id)
    if account is None:
        raise NotFound(
            f"account {account_id} not found",
            reason="ACCOUNT_NOT_FOUND",
            metadata={"account_id": account_id},
        )
    return account


def _subscription(uow: AccountsUnitOfWork, subscription_id: str) -> Subscription:
    subscription = uow.subscriptions.get(subscription_id)
    if subscription is None:
        raise NotFound(
            f"subscription {subscription_id} not found",
            reason="SUBSCRIPTION_NOT_FOUND",
            metadata={"subscription_id": subscription_id},
        )
    return subscription


def _parent_chain(uow: AccountsUnitOfWork, parent_account_id: str | None) -> list[Account]:
    """The proposed parent followed by its ancestors; empty when there is no parent."""
    if not parent_account_id:
        return []
    parent = uow.accounts.get(parent_account_id)
    if parent is None:
        raise NotFound(
            f"parent account {parent_account_id} not found",
            reason="PARENT_ACCOUNT_NOT_FOUND",
            metadata={"parent_account_id": parent_account_id},
        )
    chain = [parent]
    seen = {parent.account_id}
    while chain[-1].parent_account_id and len(chain) < _MAX_HIERARCHY_DEPTH:
        ancestor = uow.accounts.get(chain[-1].parent_account_id)
        if ancestor is None or ancestor.account_id in seen:
            break
        chain.append(ancestor)
        seen.add(ancestor.account_id)
    return chain


def _change_state(
    cmd: ChangeAccountState,
    uow: AccountsUnitOfWork,
    transition: Callable[[Account, str, datetime], AccountStateChanged],
) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        uow.publish(transition(account, cmd.reason, uow.clock.now()))
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def _unused_referral_code(uow: AccountsUnitOfWork) -> str:
    for _ in range(_REFERRAL_CODE_ATTEMPTS):
        code = new_referral_code()
        if uow.customers.get_by_referral_code(code) is None:
            return code
    raise Aborted("could not find an unused referral code; retry", reason="REFERRAL_CODE_TAKEN")


def _apply_due(
    uow: AccountsUnitOfWork, subscription: Subscription, account: Account, now: datetime
) -> bool:
    changes = subscription.apply_due_changes(account, now)
    for change in changes:
        uow.publish(change)
    return bool(changes)


def _subscription_view(
    uow: AccountsUnitOfWork, subscription_id: str, *, commit_due: bool = False
) -> SubscriptionView:
    """Load a subscription with its period; applies (and commits) due changes if asked."""
    subscription = _subscription(uow, subscription_id)
    account = _account(uow, subscription.account_id)
    now = uow.clock.now()
    if commit_due and _apply_due(uow, subscription, account, now):
        uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))


def _for_change(
    uow: AccountsUnitOfWork, subscription_id: str
) -> tuple[Subscription, Account, datetime]:
    """Load a subscription to change, first applying what fell due (in this transaction)."""
    subscription = _subscription(uow, subscription_id)
    account = _account(uow, subscription.account_id)
    now = uow.clock.now()
    _apply_due(uow, subscription, account, now)
    return subscription, account, now


def _finish_change(
    uow: AccountsUnitOfWork,
    cmd: Command,
    subscription: Subscription,
    account: Account,
    now: datetime,
) -> SubscriptionView:
    # The change depends on the account's state: fail if the account changes meanwhile.
    uow.accounts.guard(account)
    _remember(uow, cmd, subscription.subscription_id)
    uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))


def _page(items: Sequence[T], limit: int, key: Callable[[T], str]) -> Page[T]:
    """The first ``limit`` items; a next key only when the repository found more."""
    if len(items) > limit:
        return Page(list(items[:limit]), key(items[limit - 1]))
    return Page(list(items))


def _retry_once_if_aborted(read: Callable[[], T]) -> T:
    """A read that applied due changes may lose to a concurrent writer; the second
    attempt then sees the winner's result."""
    try:
        return read()
    except Aborted:
        return read()


__all__ = [
    "REFERRALS_CONSUMER",
    "add_add_on",
    "apply_due_subscription_changes",
    "bar_account",
    "cancel_subscription",
    "change_plan",
    "close_account",
    "create_account",
    "create_customer",
    "create_subscription",
    "get_account",
    "get_customer",
    "get_subscription",
    "list_account_state_history",
    "list_accounts",
    "list_customers",
    "list_subscriptions",
    "record_referral",
    "remove_add_on",
    "restore_account",
    "suspend_account",
    "update_account",
    "update_customer",
]
