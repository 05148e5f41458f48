"""The dunning service's tables, and the imperative mapping of its projections onto them.

- ``dunned_accounts`` / ``dunned_invoices``: dunning's own projection of accounts
  and invoices (from accounts', invoicing's and payments' events) with the current
  episode; mapped onto ``DunnedAccount`` / ``DunnedInvoice``. Accounts carry a
  ``version``: a payment handled while the daily run judges the same account makes
  one of the two transactions fail (ABORTED) and retry, never overwrite the other.
- ``dunning_policies``: every applied version of every policy (the document as text).
- ``dunning_runs`` / ``dunning_run_items``: one run per business date, one work item
  per account (the bill runs' engine, ADR 0049), written by one ``INSERT ... SELECT``
  of the candidates (ADR 0070).
- ``dunning_reactions``: every reaction ever planned, under its once-only ``key``
  (primary key): a reaction planned again by a rerun or after a crash is not inserted
  twice. ``status`` says whether its effect on another service is still owed.
  Columns spelt out by ``migrations/versions`` (0001 explicit, 0002: ``time_zone``,
  ``judged_at``); ``tests/integration/dunning/test_migrations.py`` compares them.
"""

from __future__ import annotations

import threading

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import registry

from services.common.db import add_kit_tables
from services.common.sqltypes import ExactDecimal, UtcDateTime
from services.dunning.domain.model import CaseState, DunnedAccount, DunnedInvoice

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)
kit = add_kit_tables(metadata)
mapper_registry = registry(metadata=metadata)

_ID = 40
_CODE = 64

dunned_accounts = Table(
    "dunned_accounts",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), nullable=False, default=""),
    Column("group_id", String(_CODE), nullable=False, default=""),
    Column("reseller_id", String(_CODE), nullable=False, default=""),
    Column("currency", String(3), nullable=False, default=""),
    Column("time_zone", String(64), nullable=False, default=""),
    Column("closed", Boolean, nullable=False, default=False),
    Column("last_failure_reason", String(64), nullable=False, default=""),
    Column("exempt_until", Date, nullable=True),
    Column("exempt_reason", String(500), nullable=False, default=""),
    Column("episode_id", String(_ID), nullable=False, default=""),
    Column("state", String(16), nullable=False, default=CaseState.ENDED.value),
    Column("level", Integer, nullable=False, default=0),
    Column("level_since", Date, nullable=True),
    Column("started_on", Date, nullable=True),
    Column("ended_on", Date, nullable=True),
    Column("end_reason", String(64), nullable=False, default=""),
    Column("policy_code", String(_CODE), nullable=False, default=""),
    Column("policy_version", Integer, nullable=False, default=0),
    Column("service_action", String(16), nullable=False, default=""),
    Column("version", Integer, nullable=False),
)
Index("ix_dunned_accounts_state", dunned_accounts.c.state, dunned_accounts.c.account_id)

dunned_invoices = Table(
    "dunned_invoices",
    metadata,
    Column("invoice_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(24), nullable=False),
    Column("total", ExactDecimal(), nullable=False),
    Column("amount_due", ExactDecimal(), nullable=False),
    Column("disputed_amount", ExactDecimal(), nullable=False),
    Column("due_date", Date, nullable=True),
    Column("issue_date", Date, nullable=True),
    Column("paid_on", Date, nullable=True),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("highest_level", Integer, nullable=False, default=0),
    Column("fees_charged", ExactDecimal(), nullable=False),
    Column("interest_through", Date, nullable=True),
)
Index("ix_dunned_invoices_account_id", dunned_invoices.c.account_id)
Index("ix_dunned_invoices_customer_id", dunned_invoices.c.customer_id)
# The daily run's question: which accounts have open invoices past their due date.
Index("ix_dunned_invoices_status_due_date", dunned_invoices.c.status, dunned_invoices.c.due_date)

dunning_policies = Table(
    "dunning_policies",
    metadata,
    Column("code", String(_CODE), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("document", Text, nullable=False),
    Column("group_ids", Text, nullable=False),  # JSON list
    Column("reseller_ids", Text, nullable=False),  # JSON list
    Column("is_default", Boolean, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

dunning_runs = Table(
    "dunning_runs",
    metadata,
    Column("run_id", String(_ID), primary_key=True),
    Column("run_date", Date, nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("accounts_total", Integer, nullable=False),
    # The instant whose date in each account's zone is the day the run judges it on
    # (the run date at the run hour, UTC); null for runs from before 0002: 01:00 UTC.
    Column("judged_at", UtcDateTime(), nullable=True),
    Column("start_time", UtcDateTime(), nullable=False),
    Column("end_time", UtcDateTime(), nullable=True),
)

dunning_run_items = Table(
    "dunning_run_items",
    metadata,
    Column("run_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), primary_key=True),
    Column("status", String(16), nullable=False),  # PENDING, DONE
    Column("escalated", Boolean, nullable=False, default=False),
)
Index("ix_dunning_run_items_run_id_status", dunning_run_items.c.run_id, dunning_run_items.c.status)

dunning_reactions = Table(
    "dunning_reactions",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("account_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("episode_id", String(_ID), nullable=False),
    Column("level", Integer, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("invoice_id", String(_ID), nullable=False),
    Column("template", String(64), nullable=False),
    Column("amount", ExactDecimal(), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("description", String(500), nullable=False),
    Column("status", String(16), nullable=False),  # PENDING, DONE, FAILED
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=False, default=""),
    Column("run_date", Date, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("done_time", UtcDateTime(), nullable=True),
)
Index("ix_dunning_reactions_status", dunning_reactions.c.status)
Index("ix_dunning_reactions_account_id", dunning_reactions.c.account_id)

_lock = threading.Lock()
_mapped = False


def start_mappers() -> None:
    """Map the projections once per process (idempotent, thread-safe)."""
    global _mapped
    with _lock:
        if _mapped:
            return
        mapper_registry.map_imperatively(DunnedInvoice, dunned_invoices)
        mapper_registry.map_imperatively(
            DunnedAccount, dunned_accounts, version_id_col=dunned_accounts.c.version
        )
        _mapped = True
