"""Translation between the wire (``reckon.accounts.v1``) and the service layer.

``*_command`` and ``*_query`` functions check a whole request, collect every
bad field into one INVALID_ARGUMENT (paths as in the request, e.g.
``account.bill_cycle_day``) and only then build the command, so a handler
never sees malformed input. ``*_to_proto`` functions turn domain objects into
messages. No business rule lives here.

The functions are grouped by resource: ``translate_customers``,
``translate_accounts``, ``translate_subscriptions``, over ``translate_common``
(enum maps, update masks, page tokens). This module re-exports them: the servicer
uses ``translate.<function>``.
"""

from services.accounts.entrypoints.translate_accounts import (
    account_to_proto,
    create_account_command,
    get_account_query,
    list_accounts_query,
    list_state_history_query,
    state_change_command,
    state_change_to_proto,
    update_account_command,
)
from services.accounts.entrypoints.translate_common import (
    ACCOUNT_STATES,
    PAYMENT_MODES,
    SUBSCRIPTION_STATES,
    TIMINGS,
    next_page_token,
)
from services.accounts.entrypoints.translate_customers import (
    create_customer_command,
    customer_to_proto,
    get_customer_query,
    list_customers_query,
    update_customer_command,
)
from services.accounts.entrypoints.translate_subscriptions import (
    add_add_on_command,
    cancel_subscription_command,
    change_plan_command,
    create_subscription_command,
    get_subscription_query,
    list_subscriptions_query,
    remove_add_on_command,
    subscription_to_proto,
)

__all__ = [
    "ACCOUNT_STATES",
    "PAYMENT_MODES",
    "SUBSCRIPTION_STATES",
    "TIMINGS",
    "account_to_proto",
    "add_add_on_command",
    "cancel_subscription_command",
    "change_plan_command",
    "create_account_command",
    "create_customer_command",
    "create_subscription_command",
    "customer_to_proto",
    "get_account_query",
    "get_customer_query",
    "get_subscription_query",
    "list_accounts_query",
    "list_customers_query",
    "list_state_history_query",
    "list_subscriptions_query",
    "next_page_token",
    "remove_add_on_command",
    "state_change_command",
    "state_change_to_proto",
    "subscription_to_proto",
    "update_account_command",
    "update_customer_command",
]
