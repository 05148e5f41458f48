"""The accounts service's tables and the imperative mapping of the domain classes onto them.

One ``MetaData`` holds these tables and the kit's (outbox, processed_events,
idempotency_keys); the Alembic revisions in ``adapters/migrations`` create
exactly these tables (a test compares the two). The domain stays ignorant of
storage: ``start_mappers`` instruments its classes once per process.

- Money is two columns, an exact decimal amount (``ExactDecimal``) and the
  currency, mapped to ``Money`` as a composite (``None`` when both are NULL).
- Instants are ``UtcDateTime``: aware UTC on both databases.
- Customers, accounts and subscriptions carry a ``version`` column
  (``version_id_col``): an UPDATE names the version it read, so of two
  concurrent changes to one row the second finds nothing to update, and its
  unit of work fails with ABORTED instead of silently overwriting the first.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import composite, registry, relationship

from services.accounts.domain.model import (
    Account,
    AccountState,
    AddOn,
    Customer,
    PaymentMode,
    StateChange,
    Subscription,
    SubscriptionState,
)
from services.common.db import add_kit_tables
from services.common.money import Money
from services.common.sqltypes import ExactDecimal, UtcDateTime

# Deterministic constraint names, so migrations can name what they create and alter.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
kit = add_kit_tables(metadata)
mapper_registry = registry(metadata=metadata)

_ID = 40  # "cus_" + 26 characters, with room to spare
_CODE = 64  # plan and add-on codes, reseller and group ids


def _enum(enum_class: type[AccountState] | type[PaymentMode] | type[SubscriptionState]) -> Enum:
    # Stored as text (VARCHAR), not a native PostgreSQL enum: adding a state later is
    # then a code change, not a type migration, and SQLite behaves the same.
    return Enum(enum_class, native_enum=False, create_constraint=False, length=16)


customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(_ID), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("email", String(254), nullable=False),
    Column("phone_number", String(16), nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("reseller_id", String(_CODE), nullable=False),
    Column("group_id", String(_CODE), nullable=False),
    Column("referral_code", String(16), nullable=False, unique=True),
    Column("referred_by", String(16), nullable=False),
    Column(
        "referrer_customer_id",
        String(_ID),
        ForeignKey("customers.customer_id"),
        nullable=True,
    ),
    Column("referrals_count", Integer, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("external_ref", String(_CODE), nullable=True, unique=True),
    Column("vat_id", String(16), nullable=False, server_default=""),
)
Index(None, customers.c.reseller_id, customers.c.customer_id)
Index(None, customers.c.group_id, customers.c.customer_id)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), ForeignKey("customers.customer_id"), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("currency_code", String(8), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("bill_cycle_day", Integer, nullable=False),
    Column("tax_region", String(16), nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("payment_mode", _enum(PaymentMode), nullable=False),
    Column("credit_limit_amount", ExactDecimal, nullable=True),
    Column("credit_limit_currency", String(8), nullable=True),
    Column("parent_account_id", String(_ID), ForeignKey("accounts.account_id"), nullable=True),
    Column("state", _enum(AccountState), nullable=False),
    Column("state_reason", String(500), nullable=False),
    Column("state_change_time", UtcDateTime, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("external_ref", String(_CODE), nullable=True, unique=True),
)
Index(None, accounts.c.customer_id, accounts.c.account_id)
Index(None, accounts.c.state, accounts.c.account_id)
Index(None, accounts.c.parent_account_id)

account_state_changes = Table(
    "account_state_changes",
    metadata,
    Column("account_id", String(_ID), ForeignKey("accounts.account_id"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("from_state", _enum(AccountState), nullable=False),
    Column("to_state", _enum(AccountState), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("change_time", UtcDateTime, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), ForeignKey("accounts.account_id"), nullable=False),
    Column("plan_code", String(_CODE), nullable=False),
    Column("state", _enum(SubscriptionState), nullable=False),
    Column("start_time", UtcDateTime, nullable=False),
    Column("pending_plan_code", String(_CODE), nullable=True),
    Column("pending_plan_effective_time", UtcDateTime, nullable=True),
    Column("cancel_time", UtcDateTime, nullable=True),
    Column("cancel_at_period_end", Boolean, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("service_ids", Text, nullable=False, server_default=""),
)
Index(None, subscriptions.c.account_id, subscriptions.c.subscription_id)

# Service identifier keys (msisdn:+31..., sip:..., pin:..., code:...) to the subscription
# that holds them: unique, and the way to find an account by a number (issue 9 item 12).
service_identifiers = Table(
    "service_identifiers",
    metadata,
    Column("key", String(220), primary_key=True),
    Column(
        "subscription_id",
        String(_ID),
        ForeignKey("subscriptions.subscription_id"),
        nullable=False,
    ),
    Column("account_id", String(_ID), nullable=False),
)
# The scheduler's questions: which plan changes and cancellations are due.
Index(None, subscriptions.c.state, subscriptions.c.pending_plan_effective_time)
Index(None, subscriptions.c.state, subscriptions.c.cancel_time)

subscription_add_ons = Table(
    "subscription_add_ons",
    metadata,
    Column(
        "subscription_id",
        String(_ID),
        ForeignKey("subscriptions.subscription_id"),
        primary_key=True,
    ),
    Column("add_on_code", String(_CODE), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("add_time", UtcDateTime, nullable=False),
)


def _money_or_none(amount: Decimal | None, currency: str | None) -> Money | None:
    if amount is None or currency is None:
        return None
    return Money(amount, currency)


_lock = threading.Lock()
_started = False


def start_mappers() -> None:
    """Map the domain classes onto the tables; idempotent, once per process."""
    global _started
    with _lock:
        if _started:
            return
        mapper_registry.map_imperatively(StateChange, account_state_changes)
        mapper_registry.map_imperatively(AddOn, subscription_add_ons)
        mapper_registry.map_imperatively(Customer, customers, version_id_col=customers.c.version)
        mapper_registry.map_imperatively(
            Account,
            accounts,
            version_id_col=accounts.c.version,
            properties={
                "credit_limit": composite(
                    _money_or_none,
                    accounts.c.credit_limit_amount,
                    accounts.c.credit_limit_currency,
                ),
                # selectin: loaded with the account, so it is usable after the session closed.
                "state_changes": relationship(
                    StateChange,
                    order_by=account_state_changes.c.sequence,
                    lazy="selectin",
                    cascade="all, delete-orphan",
                ),
            },
        )
        mapper_registry.map_imperatively(
            Subscription,
            subscriptions,
            version_id_col=subscriptions.c.version,
            properties={
                "add_ons": relationship(
                    AddOn,
                    order_by=(subscription_add_ons.c.add_time, subscription_add_ons.c.add_on_code),
                    lazy="selectin",
                    cascade="all, delete-orphan",
                ),
            },
        )
        _started = True
