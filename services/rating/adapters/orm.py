"""Tables of the rating service and the imperative mapping of its model classes.

Rated usage and rejects are written in bulk through Core (COPY on PostgreSQL,
executemany on SQLite); the mapped classes serve the handlers that read and
change a few rows at a time. Amounts are stored as integer **nanos** (billionths
of the currency unit, the precision of ``google.type.Money``): exact on both
databases, cheap to sum, and a plain integer in a COPY stream.

Migrations in ``adapters/migrations`` create exactly these tables; a test
compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import registry

from services.common.db import add_kit_tables
from services.common.sqltypes import UtcDateTime, big_serial
from services.rating.service_layer.model import (
    CatalogRevision,
    ImportFile,
    KnownAccount,
    PlanAssignment,
    PrefixSet,
    Reject,
    RerateRun,
)

metadata = MetaData()
kit = add_kit_tables(metadata)

catalog_revisions = Table(
    "catalog_revisions",
    metadata,
    Column("revision", Integer, primary_key=True, autoincrement=True),
    Column("checksum", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("document_format", String(8), nullable=False),
    Column("source_name", String(255), nullable=False),
    Column("prefix_set_id", String(40), nullable=True),
    Column("plan_count", Integer, nullable=False),
    Column("prefix_count", BigInteger, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

prefix_sets = Table(
    "prefix_sets",
    metadata,
    Column("set_id", String(40), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("prefix_count", BigInteger, nullable=False),
    Column("destination_count", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

destination_prefixes = Table(
    "destination_prefixes",
    metadata,
    Column("set_id", String(40), primary_key=True),
    Column("prefix", String(16), primary_key=True),
    Column("destination", String(100), nullable=False),
)

known_accounts = Table(
    "known_accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("tax_region", String(64), nullable=False),
    Column("group_code", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("bill_cycle_day", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("customer_ref", String(64), nullable=False, server_default=""),
)

# Other names of an account a CDR may carry (issue 9 item 12): ``ext:<ref>`` (its external
# reference) and its subscriptions' service identifiers (msisdn:+31..., sip:..., pin:...,
# code:...), from accounts' events.
account_aliases = Table(
    "account_aliases",
    metadata,
    Column("alias", String(220), primary_key=True),
    Column("account_id", String(64), nullable=False),
)

plan_assignments = Table(
    "plan_assignments",
    metadata,
    Column("id", big_serial(), primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("plan_code", String(100), nullable=False),
    Column("effective_from", UtcDateTime, nullable=False),
    Column("subscription_id", String(64), nullable=False),
    Index("ix_plan_assignments_account", "account_id", "effective_from"),
)

import_files = Table(
    "import_files",
    metadata,
    Column("file_id", String(40), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("checksum", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("header", Text, nullable=True),
    Column("failed_loudly", Boolean, nullable=False),
    Column("failure_message", Text, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("rated", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),
    Column("committed_line", BigInteger, nullable=False),
    Column("rejects_by_reason", Text, nullable=False),
    Column("rated_totals", Text, nullable=False),
    Column("catalog_revision", Integer, nullable=True),
    Column("request_id", String(128), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("held", Boolean, nullable=False, server_default=text("false")),
    Column("released_at", UtcDateTime, nullable=True),
)

# Events of an import held back until the file ends well (or is released): envelopes
# ready for the outbox, moved there in one INSERT ... SELECT (ADR 0042).
held_events = Table(
    "held_events",
    metadata,
    Column("id", big_serial(), primary_key=True, autoincrement=True),
    Column("hold_key", String(40), nullable=False, index=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(128), nullable=False),
    Column("stream", String(128), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# One row per rating of a record. ``is_current`` marks the result in force; a re-rating
# clears it on the old row and inserts a new one, so history is kept and the partial
# unique index still de-duplicates record ids across files.
rated_usage = Table(
    "rated_usage",
    metadata,
    Column("id", big_serial(), primary_key=True, autoincrement=True),
    Column("record_id", String(128), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("allowance_units", BigInteger, nullable=False),
    Column("charged_units", BigInteger, nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("net_nanos", BigInteger, nullable=False),
    Column("tax_nanos", BigInteger, nullable=False),
    Column("plan_code", String(100), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("catalog_revision", Integer, nullable=False),
    Column("file_id", String(40), nullable=True),
    Column("line", BigInteger, nullable=True),
    Column("breakdown", Text, nullable=False),
    Column("rated_at", UtcDateTime, nullable=False),
    Column("is_current", Boolean, nullable=False),
    Column("rerate_id", String(40), nullable=True),
    Index(
        "ux_rated_usage_current_record",
        "record_id",
        unique=True,
        sqlite_where=text("is_current"),
        postgresql_where=text("is_current"),
    ),
    Index("ix_rated_usage_account_time", "account_id", "event_time"),
    Index("ix_rated_usage_file_line", "file_id", "line"),
)

# Per account and bill cycle: units drawn from each included allowance
# ("allowance:<code>") and chargeable units rated per service ("usage:<service>"), the
# counters the engine needs for allowances, packages and tiers.
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("cycle_start", String(10), primary_key=True),  # ISO date in the account's zone
    Column("counter", String(200), primary_key=True),
    Column("units", BigInteger, nullable=False),
)

rejects = Table(
    "rejects",
    metadata,
    Column("reject_id", big_serial(), primary_key=True, autoincrement=True),
    Column("file_id", String(40), nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("record_id", String(128), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("raw_record", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Index("ix_rejects_file_line", "file_id", "line"),
    Index("ix_rejects_status_reason", "status", "reason"),
)

rerate_runs = Table(
    "rerate_runs",
    metadata,
    Column("rerate_id", String(40), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("catalog_revision", Integer, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("changed", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("totals", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("request_id", String(128), nullable=False),
)

mapper_registry = registry()
_mapped = False


def start_mappers() -> None:
    """Map the model classes onto the tables (once per process)."""
    global _mapped
    if _mapped:
        return
    mapper_registry.map_imperatively(CatalogRevision, catalog_revisions)
    mapper_registry.map_imperatively(PrefixSet, prefix_sets)
    mapper_registry.map_imperatively(PlanAssignment, plan_assignments)
    # Assignments are loaded by the repository (ordered, per account) rather than
    # through a relationship, so the account view stays a plain object.
    mapper_registry.map_imperatively(
        KnownAccount, known_accounts, exclude_properties=["assignments"]
    )
    mapper_registry.map_imperatively(ImportFile, import_files)
    mapper_registry.map_imperatively(Reject, rejects)
    mapper_registry.map_imperatively(RerateRun, rerate_runs)
    _mapped = True
