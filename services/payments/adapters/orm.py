"""The payments service's tables and the imperative mapping of the domain onto them.

No column can hold a card number: methods keep the provider token, brand, last
four and expiry; SEPA mandates keep the masked IBAN only (the provider holds
the mandate). Money is an exact decimal plus currency (``Money`` composite).
Payments carry a ``version`` column: two workers resolving the same payment (the
janitor and a late callback) cannot both win; the second gets ABORTED.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Column,
    Date,
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

from services.common.db import add_kit_tables
from services.common.money import Money
from services.common.sqltypes import ExactDecimal, UtcDateTime
from services.payments.domain.model import (
    AccountPaymentSettings,
    Allocation,
    Attempt,
    AttemptState,
    Channel,
    MethodKind,
    Payment,
    PaymentMethod,
    PaymentState,
    Purpose,
    TransactionKind,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
kit = add_kit_tables(metadata)
mapper_registry = registry(metadata=metadata)

_ID = 64


def _enum(enum_class: type) -> Enum:
    # Text, not a native enum: a new state is a code change, not a type migration.
    return Enum(enum_class, native_enum=False, create_constraint=False, length=24)


payment_methods = Table(
    "payment_methods",
    metadata,
    Column("method_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), nullable=False),
    Column("account_id", String(_ID), nullable=False),
    Column("kind", _enum(MethodKind), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("token", String(128), nullable=False),
    Column("card_brand", String(32), nullable=False),
    Column("card_last4", String(4), nullable=False),
    Column("card_exp_month", Integer, nullable=False),
    Column("card_exp_year", Integer, nullable=False),
    Column("iban_masked", String(34), nullable=False),
    Column("mandate_reference", String(35), nullable=False),
    Column("mandate_signed_on", Date, nullable=True),
    Column("payment_reference", String(25), nullable=False),
    Column("wallet_name", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=True),
    Column("removed", Boolean, nullable=False),
)
Index(None, payment_methods.c.account_id)
Index(None, payment_methods.c.payment_reference)

account_settings = Table(
    "account_settings",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("group_id", String(_ID), nullable=False),
    Column("auto_collect", Boolean, nullable=False),
    Column("default_method_id", String(_ID), nullable=False),
)

retry_policies = Table(
    "retry_policies",
    metadata,
    Column("group_id", String(_ID), primary_key=True),
    Column("retry_days", String(128), nullable=False),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(_ID), primary_key=True),
    Column("kind", _enum(TransactionKind), nullable=False),
    Column("purpose", _enum(Purpose), nullable=False),
    Column("account_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("channel", _enum(Channel), nullable=False),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("method_id", String(_ID), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("parent_payment_id", String(_ID), nullable=False),
    Column("state", _enum(PaymentState), nullable=False),
    Column("provider_reference", String(128), nullable=False),
    Column("decline_code", String(64), nullable=False),
    Column("hard_decline", Boolean, nullable=False),
    Column("settled_at", UtcDateTime, nullable=True),
    Column("invoice_ids", Text, nullable=False),
    Column("retry_days", String(128), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("first_failed_at", UtcDateTime, nullable=True),
    Column("next_retry_at", UtcDateTime, nullable=True),
    Column("next_check_at", UtcDateTime, nullable=True),
    Column("checks_done", Integer, nullable=False),
    Column("refunded_amount", ExactDecimal, nullable=False),
    Column("credit_amount", ExactDecimal, nullable=False),
    Column("effects_pending", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
)
Index(None, payments.c.account_id, payments.c.created_at)
Index(None, payments.c.customer_id, payments.c.created_at)
Index(None, payments.c.next_check_at)
Index(None, payments.c.next_retry_at)
Index(None, payments.c.provider_reference)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("attempt_id", String(_ID), primary_key=True),
    Column("payment_id", String(_ID), ForeignKey("payments.payment_id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("state", _enum(AttemptState), nullable=False),
    Column("decline_code", String(64), nullable=False),
    Column("provider_reference", String(128), nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
)
Index(None, payment_attempts.c.payment_id)

payment_allocations = Table(
    "payment_allocations",
    metadata,
    Column("payment_id", String(_ID), ForeignKey("payments.payment_id"), primary_key=True),
    Column("invoice_id", String(_ID), primary_key=True),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("applied", Boolean, nullable=False),
)
Index(None, payment_allocations.c.invoice_id)

# The structured creditor reference (RF) of each issued invoice, kept when it is
# announced: what customers quote on transfers and statements are matched by.
invoice_references = Table(
    "invoice_references",
    metadata,
    Column("reference", String(25), primary_key=True),
    Column("invoice_id", String(_ID), nullable=False, unique=True),
    Column("account_id", String(_ID), nullable=False),
)

# Lines of imported bank statements (camt.053) and what became of each.
statement_lines = Table(
    "statement_lines",
    metadata,
    Column("line_id", String(_ID), primary_key=True),
    Column("statement_id", String(128), nullable=False),
    Column("entry_reference", String(128), nullable=False, unique=True),
    Column("booked_on", Date, nullable=False),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(140), nullable=False),
    Column("debtor_name", String(140), nullable=False),
    Column("outcome", String(16), nullable=False),  # MATCHED | PARTIAL | UNMATCHED
    Column("reason", String(200), nullable=False),
    Column("payment_id", String(_ID), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
)


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount, currency)


_lock = threading.Lock()
_started = False


def start_mappers() -> None:
    """Map the domain classes onto the tables; idempotent, once per process."""
    global _started
    with _lock:
        if _started:
            return
        mapper_registry.map_imperatively(PaymentMethod, payment_methods)
        mapper_registry.map_imperatively(AccountPaymentSettings, account_settings)
        mapper_registry.map_imperatively(Attempt, payment_attempts)
        mapper_registry.map_imperatively(
            Allocation,
            payment_allocations,
            properties={
                "_amount_value": payment_allocations.c.amount,
                "amount": composite(
                    _money, payment_allocations.c.amount, payment_allocations.c.currency
                ),
            },
        )
        mapper_registry.map_imperatively(
            Payment,
            payments,
            version_id_col=payments.c.version,
            properties={
                "_amount_value": payments.c.amount,
                "amount": composite(_money, payments.c.amount, payments.c.currency),
                "attempts": relationship(
                    Attempt,
                    order_by=payment_attempts.c.number,
                    lazy="selectin",
                    cascade="all, delete-orphan",
                ),
                "allocations": relationship(
                    Allocation, lazy="selectin", cascade="all, delete-orphan"
                ),
            },
        )
        _started = True
