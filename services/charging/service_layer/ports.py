"""The ports of charging's use cases: pricing, the live balance store, the ledger writer.

- ``Pricing`` (RAT-8): the price of N units and the units an amount buys, for an
  account, service, destination and time. ``service_layer.pricing`` has an
  in-memory tariff implementation (tests, running without rating); a gRPC client
  of the rating service plugs in the same way.
- ``BalanceStore``: the live balances, reservations and sessions, changed only
  by atomic scripts (Redis Lua in ``adapters.redis_store``). Each mutating call
  returns the journal entries it appended; they must reach the ledger before the
  caller answers (the durability rule, CHG-9).
- ``LedgerWriter``: commits journal entries to SQL idempotently, grouping
  concurrent requests into one transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.common.errors import ReckonError
from services.common.money import Money


class NotPriced(ReckonError):
    """Rating has no price for this service for this account (a permanent answer)."""

    default_reason = "NOT_PRICED"


class Pricing(Protocol):
    async def price(
        self, account_id: str, service: str, destination: str, units: int, at: datetime
    ) -> Money:
        """What ``units`` of ``service`` cost (in the tariff's currency); raises NotPriced."""
        ...

    async def units_for(
        self, account_id: str, service: str, destination: str, amount: Money, at: datetime
    ) -> int:
        """How many units ``amount`` buys at most; raises NotPriced."""
        ...

    async def prices(
        self,
        account_id: str,
        service: str,
        destination: str,
        quantities: Sequence[int],
        at: datetime,
    ) -> list[Money]:
        """``price`` of each quantity (a remote implementation asks concurrently)."""
        ...


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change a script appended to an account's journal, waiting for SQL."""

    account_id: str
    entry_id: str
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.record.get("k", ""))

    @classmethod
    def parse(cls, account_id: str, raw: bytes | str) -> JournalEntry:
        record = json.loads(raw)
        return cls(account_id, str(record["id"]), record)


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """What a mutating script answered."""

    status: str
    answer: dict[str, Any]
    touch_ms: int = 0
    entries: tuple[JournalEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class SweepResult:
    status: str
    next_visit_ms: int  # -1: none
    closed_sessions: int
    entries: tuple[JournalEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class BucketView:
    bucket_id: str
    meta: dict[str, Any]
    available: int
    reserved: int


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as the live store holds it."""

    account_id: str
    fields: dict[str, str]
    buckets: tuple[BucketView, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An account rebuilt from SQL: policy fields, bucket metadata and committed balances."""

    account: dict[str, str]
    buckets: list[dict[str, Any]]
    sessions: list[dict[str, Any]] = field(default_factory=list)


class BalanceStore(Protocol):
    async def credit_control(
        self, account_id: str, session_id: str, request: dict[str, Any]
    ) -> ScriptResult: ...

    async def event(
        self, account_id: str, record_key: str, request: dict[str, Any]
    ) -> ScriptResult: ...

    async def credit(
        self, account_id: str, scope: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult: ...

    async def account(
        self, account_id: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult: ...

    async def sweep(self, account_id: str, request: dict[str, Any]) -> SweepResult: ...

    async def restore(
        self,
        account_id: str,
        snapshot: Snapshot,
        *,
        fresh: bool,
        fence_ms: int,
        snap_ms: int,
        epoch: str,
        window_s: int,
        now_ms: int,
    ) -> tuple[str, int, int]:
        """Rebuild the account from ``snapshot``: (OK | EXISTS | WAIT, wait ms, visit ms).

        Reservations open sessions still held are held again; the sweeper must visit the
        account by ``visit ms`` (0: no need) to return them on time.
        """
        ...

    async def set_state(self, account_id: str, state: str, version: int) -> str: ...

    async def server_time_ms(self) -> int: ...

    async def touch(self, account_id: str, due_ms: int) -> None: ...

    async def claim(
        self, shard: int, now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[str, str]]: ...

    async def settle(self, shard: int, account_id: str, version: str, next_ms: int) -> bool: ...

    def ack(self, entries: Sequence[JournalEntry]) -> None:
        """Forget committed journal entries, without waiting: queued for the next round trip."""

    async def read_account(self, account_id: str) -> AccountView | None: ...

    async def session_fields(
        self, account_id: str, session_id: str, names: Sequence[str]
    ) -> dict[str, str]:
        """The named fields a session has ('cum': its priced position; 'g:<rating group>':
        its reservation); empty when the store has no such session."""
        ...

    async def read_sessions(
        self, account_id: str, session_ids: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        """Every field of each session the store still has (absent ids: forgotten)."""
        ...

    async def release(
        self, account_id: str, session_id: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult:
        """Release an open session (``release.lua``, ADR 0035)."""
        ...

    def scan_accounts_with_work(self) -> AsyncIterator[str]: ...

    @property
    def shards(self) -> int: ...

    def shard_of(self, account_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class SqlOnly:
    """Something committed with journal entries that never went through Redis."""

    kind: str  # "inbox": processed_events row
    values: dict[str, Any]


class LedgerWriter(Protocol):
    async def commit(self, entries: Sequence[JournalEntry], extras: Sequence[SqlOnly] = ()) -> None:
        """Commit entries (idempotently by id) and extras in one transaction, then ack them."""
        ...
