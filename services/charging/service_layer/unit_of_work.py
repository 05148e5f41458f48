"""The unit of work of charging's SQL-first use cases, and the repositories it offers.

Balances change through the live store and the group-commit ledger writer; what
is written to SQL first goes through this unit of work: creating an account,
account states heard from the accounts service, voucher batches and
redemptions, rating-group definitions, and every read of the ledger (listing,
rebuild snapshots, idempotency look-ups).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.charging.domain.accounts import AccountPolicy, AccountState, StateChange
from services.charging.domain.buckets import Bucket
from services.charging.domain.ledger import LedgerEntry
from services.charging.domain.services import ServiceDefinition
from services.charging.domain.units import Quantity
from services.charging.domain.vouchers import Voucher
from services.common.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class AccountRecord:
    policy: AccountPolicy
    version: int
    updated_at: datetime
    state: AccountState = AccountState.ACTIVE
    state_version: int = 0


class AccountRepository(Protocol):
    def get(self, account_id: str) -> AccountRecord | None: ...

    def add(self, policy: AccountPolicy, now: datetime) -> None: ...

    def state(self, account_id: str) -> tuple[AccountState, int] | None: ...

    def record_state(self, change: StateChange, now: datetime) -> bool:
        """Store a state if newer than the stored one; True when stored."""
        ...

    def facts_version(self, account_id: str) -> int | None:
        """The version of the newest accounts event applied to the policy (None: no account)."""
        ...

    def record_facts_version(self, account_id: str, version: int) -> None:
        """Raise the applied facts version (never lowers it)."""
        ...

    def customer_of(self, account_id: str) -> str | None:
        """The customer owning the account (None: unknown account, or not learnt)."""
        ...

    def record_customer(self, account_id: str, customer_id: str) -> None:
        """Keep the owning customer of a known account (from accounts' events)."""
        ...


class BucketRepository(Protocol):
    def for_account(self, account_id: str) -> list[Bucket]: ...

    def get(self, account_id: str, bucket_id: str) -> Bucket | None: ...

    def expiring(self, now: datetime, until: datetime, limit: int) -> list[Bucket]:
        """Buckets ending in (now, until] not yet announced."""
        ...

    def expired(self, now: datetime, limit: int) -> list[Bucket]:
        """Buckets ended by now not yet announced."""
        ...

    def mark_announced(self, bucket: Bucket, *, expired: bool, now: datetime) -> None: ...

    def expired_unsettled(self, now: datetime, limit: int) -> list[Bucket]:
        """Buckets ended by now that may still hold something to forfeit (ADR 0021)."""
        ...

    def mark_settled(self, bucket: Bucket, now: datetime) -> None:
        """Nothing is left in the ended bucket: later passes skip it."""
        ...


class LedgerRepository(Protocol):
    def page(
        self, account_id: str, bucket_id: str | None, after_seq: int, limit: int
    ) -> list[LedgerEntry]: ...

    def get(self, entry_id: str) -> LedgerEntry | None: ...

    def balances(self, account_id: str) -> dict[str, int]:
        """Credits minus debits per bucket."""
        ...

    def references_present(self, account_id: str, references: list[str]) -> set[str]: ...

    def by_reference(self, account_id: str, reference: str) -> LedgerEntry | None: ...

    def recent_sessions(self, account_id: str, since: datetime) -> list[dict[str, Any]]: ...

    def open_sessions(
        self, account_id: str, since: datetime, after: str, limit: int
    ) -> list[str]: ...


class CheckpointRepository(Protocol):
    """Balance checkpoints (ADR 0036)."""

    def cursor(self) -> tuple[int, int, datetime | None]: ...

    def save_cursor(
        self, was: int, scanned: int, candidate: int, candidate_at: datetime | None
    ) -> bool: ...

    def latest_seq(self) -> int: ...

    def counts(self, after_seq: int, through_seq: int) -> dict[str, int]: ...

    def add_pending(self, counts: dict[str, int], threshold: int) -> list[str]: ...

    def checkpoint(self, account_id: str, through_seq: int, now: datetime) -> bool: ...


class VoucherRepository(Protocol):
    def add_batch(
        self,
        batch_id: str,
        label: str,
        value: Quantity,
        expire_time: datetime,
        hashes: list[tuple[str, str]],
        now: datetime,
    ) -> None: ...

    def batch(self, batch_id: str) -> tuple[int, datetime] | None: ...

    def find(self, code_hash: str) -> Voucher | None: ...

    def redeem(self, voucher_id: str, account_id: str, request_id: str, now: datetime) -> bool:
        """Mark redeemed if nobody has; True when this call redeemed it."""
        ...

    def redeemed_without_credit(self, before: datetime, limit: int) -> list[Voucher]: ...


class ServiceRepository(Protocol):
    def all(self) -> list[ServiceDefinition]: ...

    def put(self, definition: ServiceDefinition, now: datetime) -> None: ...


class SubscriberAliasRepository(Protocol):
    """Service identifiers and external references naming accounts (ADR 0058)."""

    def claim(self, alias: str, account_id: str, version: int, now: datetime) -> bool:
        """``alias`` names ``account_id`` unless a newer claim (higher version) holds it."""
        ...

    def owners(self, aliases: Collection[str]) -> dict[str, str]:
        """The account each of ``aliases`` that names one names."""
        ...


class ChargingUnitOfWork(UnitOfWork):
    accounts: AccountRepository
    buckets: BucketRepository
    ledger: LedgerRepository
    checkpoints: CheckpointRepository
    vouchers: VoucherRepository
    services: ServiceRepository
    aliases: SubscriberAliasRepository
