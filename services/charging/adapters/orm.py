"""Charging's tables (SQLAlchemy Core) on SQLite and PostgreSQL.

Amounts are stored as the same scaled integers the Lua scripts use
(``domain.units``), with the unit key beside them (``m:EUR``, ``t``, ``v``,
``u:sms``): exact on both databases and cheap to sum. The ledger is written in
bulk by the group-commit writer with ``INSERT ... ON CONFLICT DO NOTHING`` on the
entry id, which is why the tables are Core tables read through repositories
rather than mapped classes: an idempotent bulk insert is the whole point.

- ``charging_accounts``: policy per account (version orders concurrent changes);
- ``account_states``: the state heard from the accounts service (ordered by event time);
- ``buckets``: bucket metadata (balances are sums of the ledger);
- ``ledger_entries``: every committed debit and credit (CHG-9);
- ``cc_sessions``: the last answered request of every recent session,
  so idempotency survives a Redis loss;
- ``ledger_checkpoints``: a balance per account and bucket through a ledger seq, so a
  balance is the checkpoint plus the entries after it (ADR 0036);
  ``ledger_checkpoint_pending`` (entries since, per account) and
  ``ledger_checkpoint_cursor`` (how far the checkpoint pass has read);
- ``vouchers`` / ``voucher_batches``; ``service_definitions`` (rating groups);
- ``subscriber_aliases``: the service identifiers (``msisdn:+31...``, ``sip:...``,
  ``pin:...``, ``code:...``) and external references (``ext:...``) that name an
  account, learnt from accounts' events (ADR 0058);
- the kit's ``outbox``, ``processed_events`` and ``idempotency_keys``.

The Alembic revisions in ``adapters/migrations`` create exactly these tables; a
test compares the two.
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
)

from services.common.db import add_kit_tables
from services.common.sqltypes import UtcDateTime, big_serial

metadata = MetaData()
kit = add_kit_tables(metadata)

accounts = Table(
    "charging_accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("credit_limit", BigInteger, nullable=False),
    Column("low_balance", BigInteger, nullable=True),
    Column("final_unit_action", String(16), nullable=False),
    Column("redirect_address", String(512), nullable=False),
    Column("restriction_filter_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # ms of the newest AccountCreated/AccountUpdated applied (older ones are skipped).
    Column("facts_version", BigInteger, nullable=False, server_default="0"),
    # The owning customer, from AccountCreated/Updated; NULL when not learnt (ADR 0073).
    Column("customer_id", String(64), nullable=True),
)

account_states = Table(
    "account_states",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("state_version", BigInteger, nullable=False),
    Column("reason", String(256), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

buckets = Table(
    "buckets",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("bucket_id", String(80), primary_key=True),
    Column("unit", String(72), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("valid_from", UtcDateTime, nullable=True),
    Column("valid_until", UtcDateTime, nullable=True),
    Column("services", Text, nullable=False),
    Column("rating_groups", Text, nullable=False),
    Column("label", String(256), nullable=False),
    Column("main", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expiring_notified_at", UtcDateTime, nullable=True),
    Column("expired_notified_at", UtcDateTime, nullable=True),
    # Set once an ended bucket has nothing left, available or reserved (ADR 0021).
    Column("settled_at", UtcDateTime, nullable=True),
    # The version of the bucket's record last applied (UpdateBucket, CloseBucket).
    Column("meta_version", BigInteger, nullable=False, server_default="0"),
)
Index("ix_buckets_valid_until", buckets.c.valid_until)
# The forfeit pass asks for ended buckets not yet settled: without settled_at first it
# would walk every bucket that ever ended, on every pass.
Index("ix_buckets_unsettled", buckets.c.settled_at, buckets.c.valid_until)
# Likewise for the BucketExpired announcements.
Index("ix_buckets_unannounced", buckets.c.expired_notified_at, buckets.c.valid_until)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", big_serial(), primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, unique=True),
    Column("account_id", String(64), nullable=False),
    Column("bucket_id", String(80), nullable=False),
    Column("direction", String(1), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("unit", String(72), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("session_id", String(256), nullable=False),
    Column("request_number", BigInteger, nullable=False),
    Column("rating_group", BigInteger, nullable=False),
    Column("reference", String(256), nullable=False),
    Column("reason", String(512), nullable=False),
    Column("request_key", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_ledger_account_seq", ledger_entries.c.account_id, ledger_entries.c.seq)
Index("ix_ledger_account_bucket", ledger_entries.c.account_id, ledger_entries.c.bucket_id)
Index("ix_ledger_account_reference", ledger_entries.c.account_id, ledger_entries.c.reference)
Index("ix_ledger_request_key", ledger_entries.c.account_id, ledger_entries.c.request_key)

cc_sessions = Table(
    "cc_sessions",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("session_id", String(256), primary_key=True),
    Column("last_request_number", BigInteger, nullable=False),
    Column("state", String(1), nullable=False),
    Column("request_type", String(1), nullable=False),
    Column("answer", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_cc_sessions_recent", cc_sessions.c.account_id, cc_sessions.c.updated_at)

# ADR 0036: a bucket's balance = amount + its ledger entries with seq > through_seq. All rows
# of an account carry the same through_seq (written together, read in one statement).
ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("bucket_id", String(80), primary_key=True),
    Column("through_seq", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
ledger_checkpoint_pending = Table(
    "ledger_checkpoint_pending",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("entries", BigInteger, nullable=False),
)
ledger_checkpoint_cursor = Table(
    "ledger_checkpoint_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("scanned_seq", BigInteger, nullable=False),
    # A seq seen at candidate_at: once every transaction open then has ended, entries up to
    # it are all committed (or never will be) and a checkpoint may cover them.
    Column("candidate_seq", BigInteger, nullable=False),
    Column("candidate_at", UtcDateTime, nullable=True),
)

voucher_batches = Table(
    "voucher_batches",
    metadata,
    Column("batch_id", String(40), primary_key=True),
    Column("label", String(256), nullable=False),
    Column("count", Integer, nullable=False),
    Column("unit", String(72), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

vouchers = Table(
    "vouchers",
    metadata,
    Column("voucher_id", String(48), primary_key=True),
    Column("batch_id", String(40), nullable=False),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("unit", String(72), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("redeemed_by", String(64), nullable=True),
    Column("redeem_request", String(128), nullable=True),
    Column("redeemed_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_vouchers_redeemed", vouchers.c.redeemed_at)

service_definitions = Table(
    "service_definitions",
    metadata,
    Column("rating_group", BigInteger, primary_key=True, autoincrement=False),
    Column("service", String(128), nullable=False),
    Column("unit_kind", String(16), nullable=False),
    Column("unit_name", String(64), nullable=False),
    Column("charging", String(16), nullable=False),
    Column("default_quota", BigInteger, nullable=False),
    Column("validity_seconds", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A subscriber's names (issue 9 item 12, ADR 0058): version is the accounts event's time
# (ms), so a late redelivery never moves a number back.
subscriber_aliases = Table(
    "subscriber_aliases",
    metadata,
    Column("alias", String(220), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
