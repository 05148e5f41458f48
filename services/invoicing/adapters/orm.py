"""The invoicing service's tables (SQLAlchemy Core) and the kit's outbox/inbox/keys.

Repositories translate rows to the domain's dataclasses and back (``repositories``);
the domain never sees SQL. The Alembic revisions in ``adapters/migrations``
create exactly these tables.

Guarantees the schema gives, whatever a crashed or concurrent worker does:
- ``uq_invoices_account_id_cycle_key``: one invoice per account and cycle
  (bill-run invoices use the cycle start as ``cycle_key``), so a work item done
  twice cannot make a second invoice;
- ``uq_invoices_series_number`` / ``uq_credit_notes_series_number``: a number is
  used once in its series; ``number_series`` rows are locked (UPDATE) while a
  number is taken, so numbers are gapless under concurrent finalisation;
- ``rated_usage.invoice_id`` and ``pending_items.invoice_id`` say which invoice
  took a record or item: each goes on one invoice only.
"""

from __future__ import annotations

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
    UniqueConstraint,
)

from services.common.db import add_kit_tables
from services.common.sqltypes import ExactDecimal, UtcDateTime, big_serial

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
kit = add_kit_tables(metadata)

_ID = 40
_CODE = 64
_CUR = 8
_TEXT = 500

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(_ID), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("email", String(254), nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("reseller_id", String(_CODE), nullable=False),
    Column("group_id", String(_CODE), nullable=False),
    Column("vat_id", String(_CODE), nullable=False, server_default=""),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), nullable=False),
    Column("currency_code", String(_CUR), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("bill_cycle_day", Integer, nullable=False),
    Column("tax_region", String(16), nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("payment_mode", String(16), nullable=False),
    Column("parent_account_id", String(_ID), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reseller_id", String(_CODE), nullable=False),
    Column("group_id", String(_CODE), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
Index(None, accounts.c.bill_cycle_day, accounts.c.account_id)
Index(None, accounts.c.parent_account_id)

# A plan or add-on of a subscription in force over [start_time, end_time).
segments = Table(
    "segments",
    metadata,
    Column("segment_id", big_serial(), primary_key=True, autoincrement=True),
    Column("subscription_id", String(_ID), nullable=False),
    Column("account_id", String(_ID), nullable=False),
    Column("item_code", String(_CODE), nullable=False),
    Column("is_add_on", Boolean, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("start_time", UtcDateTime, nullable=False),
    Column("end_time", UtcDateTime, nullable=True),
)
Index(None, segments.c.account_id)
Index(None, segments.c.subscription_id)

rated_usage = Table(
    "rated_usage",
    metadata,
    Column("record_id", String(128), primary_key=True),
    Column("account_id", String(_ID), nullable=False),
    Column("service", String(_CODE), nullable=False),
    Column("destination", String(128), nullable=False),
    Column("quantity", ExactDecimal, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("net", ExactDecimal, nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("invoice_id", String(_ID), nullable=True),
)
Index(None, rated_usage.c.account_id, rated_usage.c.invoice_id, rated_usage.c.event_time)
Index(None, rated_usage.c.invoice_id)

pending_items = Table(
    "pending_items",
    metadata,
    Column("pending_item_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("description", String(_TEXT), nullable=False),
    Column("service", String(_CODE), nullable=False),
    Column("amount", ExactDecimal, nullable=True),
    Column("currency", String(_CUR), nullable=False),
    Column("tax_category", String(4), nullable=False),
    Column("tax_rate", ExactDecimal, nullable=True),
    Column("reference_invoice_id", String(_ID), nullable=False),
    Column("period_start", UtcDateTime, nullable=True),
    Column("period_end", UtcDateTime, nullable=True),
    Column("fee_plan_code", String(_CODE), nullable=False),
    Column("subscription_id", String(_ID), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("days_used", Integer, nullable=False),
    Column("days_in_cycle", Integer, nullable=False),
    Column("credit", Boolean, nullable=False),
    Column("invoice_id", String(_ID), nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
)
Index(None, pending_items.c.account_id, pending_items.c.invoice_id)

_MONEY = (
    "total_net",
    "total_tax",
    "total_gross",
    "amount_paid",
    "credit_applied",
    "credited_amount",
    "credit_note_applied",
    "disputed_amount",
)

invoices = Table(
    "invoices",
    metadata,
    Column("invoice_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("cycle_key", String(_CODE), nullable=False),
    Column("status", String(16), nullable=False),
    Column("number", String(_CODE), nullable=True),
    Column("series", String(_CODE), nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("issue_date", Date, nullable=True),
    Column("due_date", Date, nullable=True),
    Column("finalize_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    *(Column(name, ExactDecimal, nullable=False) for name in _MONEY),
    Column("breakdown", Text, nullable=False),
    Column("dunning_level", Integer, nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("reseller_id", String(_CODE), nullable=False),
    Column("group_id", String(_CODE), nullable=False),
    Column("tax_region", String(16), nullable=False),
    Column("bill_cycle_day", Integer, nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("bill_run_id", String(_ID), nullable=False),
    Column("version", Integer, nullable=False),
    UniqueConstraint("account_id", "cycle_key"),
    UniqueConstraint("series", "number"),
)
Index(None, invoices.c.bill_run_id, invoices.c.status)
Index(None, invoices.c.customer_id, invoices.c.create_time)
Index(None, invoices.c.status, invoices.c.due_date)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("invoice_id", String(_ID), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("description", String(_TEXT), nullable=False),
    Column("service", String(_CODE), nullable=False),
    Column("destination_group", String(128), nullable=False),
    Column("time_band", String(_CODE), nullable=False),
    Column("quantity", ExactDecimal, nullable=False),
    Column("unit_code", String(16), nullable=False),
    Column("unit_price", ExactDecimal, nullable=False),
    Column("allowance", ExactDecimal, nullable=True),
    Column("net_amount", ExactDecimal, nullable=False),
    Column("tax_category", String(4), nullable=False),
    Column("tax_rate", ExactDecimal, nullable=False),
    Column("period_start", UtcDateTime, nullable=True),
    Column("period_end", UtcDateTime, nullable=True),
    Column("subscription_id", String(_ID), nullable=False),
    Column("plan_code", String(_CODE), nullable=False),
    Column("source_account_id", String(_ID), nullable=False),
    Column("detail_count", Integer, nullable=False),
    Column("unrounded_amount", ExactDecimal, nullable=True),
)

invoice_history = Table(
    "invoice_history",
    metadata,
    Column("entry_id", big_serial(), primary_key=True, autoincrement=True),
    Column("invoice_id", String(_ID), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("action", String(_CODE), nullable=False),
    Column("detail", String(_TEXT), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)
Index(None, invoice_history.c.invoice_id)

payment_allocations = Table(
    "payment_allocations",
    metadata,
    Column("allocation_id", big_serial(), primary_key=True, autoincrement=True),
    Column("invoice_id", String(_ID), nullable=False),
    Column("payment_id", String(128), nullable=False),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("record_time", UtcDateTime, nullable=False),
)
Index(None, payment_allocations.c.invoice_id, payment_allocations.c.payment_id)

account_credit = Table(
    "account_credit",
    metadata,
    Column("entry_id", big_serial(), primary_key=True, autoincrement=True),
    Column("account_id", String(_ID), nullable=False),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("reason", String(_TEXT), nullable=False),
    Column("reference_id", String(128), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
Index(None, account_credit.c.account_id)

number_series = Table(
    "number_series",
    metadata,
    Column("series", String(_CODE), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("credit_note_id", String(_ID), primary_key=True),
    Column("number", String(_CODE), nullable=False),
    Column("series", String(_CODE), nullable=False),
    Column("invoice_id", String(_ID), nullable=False),
    Column("invoice_number", String(_CODE), nullable=False),
    Column("account_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("reason", String(_TEXT), nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("credited_to_account", ExactDecimal, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    UniqueConstraint("series", "number"),
)
Index(None, credit_notes.c.invoice_id)
Index(None, credit_notes.c.account_id)

credit_note_lines = Table(
    "credit_note_lines",
    metadata,
    Column("credit_note_id", String(_ID), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("description", String(_TEXT), nullable=False),
    Column("net_amount", ExactDecimal, nullable=False),
    Column("tax_category", String(4), nullable=False),
    Column("tax_rate", ExactDecimal, nullable=False),
    Column("invoice_line_id", String(16), nullable=False),
)

disputes = Table(
    "disputes",
    metadata,
    Column("dispute_id", String(_ID), primary_key=True),
    Column("invoice_id", String(_ID), nullable=False),
    Column("amount", ExactDecimal, nullable=False),
    Column("currency", String(_CUR), nullable=False),
    Column("reason", String(_TEXT), nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolution_note", String(_TEXT), nullable=False),
    Column("credit_note_id", String(_ID), nullable=False),
    Column("open_time", UtcDateTime, nullable=False),
    Column("resolve_time", UtcDateTime, nullable=True),
)
Index(None, disputes.c.invoice_id)

# What notifications told of the messages about an invoice (``MessageStatusChanged``,
# ADR 0063): one row per message, its latest status; the recipient is already masked.
invoice_notifications = Table(
    "invoice_notifications",
    metadata,
    Column("message_id", String(_ID), primary_key=True),
    Column("invoice_id", String(_ID), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(_TEXT), nullable=False),
    Column("template", String(_CODE), nullable=False),
    Column("source_event_type", String(_CODE), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(_TEXT), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("status_time", UtcDateTime, nullable=False),
)
Index(None, invoice_notifications.c.invoice_id)

bill_runs = Table(
    "bill_runs",
    metadata,
    Column("bill_run_id", String(_ID), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("bill_cycle_day", Integer, nullable=False),
    Column("reseller_id", String(_CODE), nullable=False),
    Column("group_id", String(_CODE), nullable=False),
    Column("account_id", String(_ID), nullable=False),
    Column("billing_date", Date, nullable=False),
    Column("auto_accept", Boolean, nullable=False),
    Column("scheduled", Boolean, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("complete_time", UtcDateTime, nullable=True),
    Column("update_time", UtcDateTime, nullable=False),
)
Index(None, bill_runs.c.state, bill_runs.c.create_time)

# One work item per account of a run; its status changes in the same transaction as
# the invoice it made, so the run's counts are exact after any crash.
bill_run_items = Table(
    "bill_run_items",
    metadata,
    Column("bill_run_id", String(_ID), primary_key=True),
    Column("account_id", String(_ID), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("invoice_id", String(_ID), nullable=False),
    Column("error_reason", String(_CODE), nullable=False),
    Column("error_message", String(_TEXT), nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index(None, bill_run_items.c.bill_run_id, bill_run_items.c.status)
