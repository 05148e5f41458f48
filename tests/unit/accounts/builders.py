"""Short ways to put customers, accounts and subscriptions in place through the handlers."""

from __future__ import annotations

from typing import Any

from services.accounts.domain.model import Account, Customer, PaymentMode
from services.accounts.service_layer import commands as cmd
from services.accounts.service_layer import handlers
from services.accounts.service_layer.commands import SubscriptionView
from services.accounts.service_layer.plan_catalog import WellFormedPlanCatalog
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.money import Money

CATALOG = WellFormedPlanCatalog()


def customer(uow: AccountsUnitOfWork, **overrides: Any) -> Customer:
    fields: dict[str, Any] = {"display_name": "Ada Lovelace", "email": "ada@example.com"}
    fields.update(overrides)
    return handlers.create_customer(cmd.CreateCustomer(**fields), uow)


def account(uow: AccountsUnitOfWork, customer_id: str | None = None, **overrides: Any) -> Account:
    fields: dict[str, Any] = {
        "customer_id": customer_id or customer(uow).customer_id,
        "currency_code": "EUR",
        "time_zone": "Europe/Amsterdam",
        "bill_cycle_day": 1,
        "payment_mode": PaymentMode.POSTPAID,
        "credit_limit": Money.of("500", "EUR"),
        "payment_terms_days": 14,
    }
    fields.update(overrides)
    return handlers.create_account(cmd.CreateAccount(**fields), uow)


def subscription(
    uow: AccountsUnitOfWork, account_id: str, plan_code: str = "basic", **overrides: Any
) -> SubscriptionView:
    command = cmd.CreateSubscription(account_id=account_id, plan_code=plan_code, **overrides)
    return handlers.create_subscription(command, uow, catalog=CATALOG)
