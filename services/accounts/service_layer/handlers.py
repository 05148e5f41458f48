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

The handlers are grouped by use case: ``customer_handlers``,
``account_handlers``, ``subscription_handlers``, over ``handler_support``
(idempotency, loading, pages). This module re-exports them: the servicer, the
event consumers and the scheduler call ``handlers.<function>``.
"""

from services.accounts.service_layer.account_handlers import (
    bar_account,
    close_account,
    create_account,
    get_account,
    list_account_state_history,
    list_accounts,
    restore_account,
    suspend_account,
    update_account,
)
from services.accounts.service_layer.customer_handlers import (
    REFERRALS_CONSUMER,
    create_customer,
    get_customer,
    list_customers,
    record_referral,
    update_customer,
)
from services.accounts.service_layer.subscription_handlers import (
    add_add_on,
    apply_due_subscription_changes,
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    list_subscriptions,
    remove_add_on,
)

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
