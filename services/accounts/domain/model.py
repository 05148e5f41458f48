"""The accounts domain model: customers, billing accounts and subscriptions.

Plain dataclasses whose methods enforce the rules and return the events that
describe what changed; the handlers persist them and publish the events. The
SQL adapter maps these classes imperatively, so nothing here knows about
storage. Entities compare by identity (``eq=False``): two objects are the same
customer only if they are the same object loaded in one unit of work.

Rules decided here (ACC-1, ACC-2):
- Credit limit: required for POSTPAID and HYBRID, in the account's currency and
  not negative; refused for PREPAID (a limit there would mean nothing).
- Parent account: an account of the *same customer* that is not CLOSED, and
  never the account itself or one of its descendants. Hierarchies model a
  customer's own structure (head office, departments); across customers they
  would leak one customer's billing into another's.
- Subscriptions grow (create, change plan, add add-ons) only on ACTIVE accounts.
  A SUSPENDED account may still shrink (remove add-ons, cancel): suspension is
  the temporary state dunning uses, and a customer in arrears should be able to
  cut costs but not take on more. BARRED and CLOSED accounts allow neither
  (``ACCOUNT_NOT_ACTIVE``); closing an account cancels its subscriptions itself.
- A cancelled subscription cannot change (``SUBSCRIPTION_CANCELLED``).

The model is split by use case: ``customers`` (Customer, referral codes),
``accounts`` (Account, its state machine and hierarchy) and ``subscriptions``
(Subscription, plan changes, add-ons). This module re-exports them all, so
``services.accounts.domain.model`` remains the one import for adapters and handlers.
"""

from services.accounts.domain.accounts import (
    ACCOUNT_MUTABLE_FIELDS,
    Account,
    AccountRevision,
    PaymentMode,
    StateChange,
    check_parent,
    credit_limit_problem,
)
from services.accounts.domain.customers import (
    CUSTOMER_MUTABLE_FIELDS,
    DEFAULT_LANGUAGE,
    REFERRAL_CODE,
    REFERRAL_CODE_ALPHABET,
    REFERRAL_CODE_LENGTH,
    Customer,
    CustomerRevision,
    new_referral_code,
)
from services.accounts.domain.lifecycle import AccountState
from services.accounts.domain.subscriptions import (
    AddOn,
    ChangeTiming,
    PendingPlanChange,
    Subscription,
    SubscriptionState,
)
from services.common.codes import PLAN_CODE  # one rule with rating's catalog (issue 9 item 10)

__all__ = [
    "ACCOUNT_MUTABLE_FIELDS",
    "CUSTOMER_MUTABLE_FIELDS",
    "DEFAULT_LANGUAGE",
    "PLAN_CODE",
    "REFERRAL_CODE",
    "REFERRAL_CODE_ALPHABET",
    "REFERRAL_CODE_LENGTH",
    "Account",
    "AccountRevision",
    "AccountState",
    "AddOn",
    "ChangeTiming",
    "Customer",
    "CustomerRevision",
    "PaymentMode",
    "PendingPlanChange",
    "StateChange",
    "Subscription",
    "SubscriptionState",
    "check_parent",
    "credit_limit_problem",
    "new_referral_code",
]
