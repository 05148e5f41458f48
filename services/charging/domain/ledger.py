"""Ledger entries: the durable record of every committed debit and credit (CHG-9).

Balances are derived: for each bucket, credits minus debits equals available plus
reserved in the live store (reservations are not entries; they are holds). After
a Redis loss the live balances are rebuilt from these sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.charging.domain.units import Quantity


class Direction(StrEnum):
    CREDIT = "C"
    DEBIT = "D"


class EntryKind(StrEnum):
    BUCKET_GRANT = "BUCKET_GRANT"
    TOP_UP = "TOP_UP"
    ADJUSTMENT = "ADJUSTMENT"
    VOUCHER = "VOUCHER"
    USAGE = "USAGE"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    REFUND = "REFUND"
    OFFLINE_USAGE = "OFFLINE_USAGE"
    # The available amount of a bucket whose validity ended, forfeited (ADR 0021).
    EXPIRY = "EXPIRY"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    account_id: str
    bucket_id: str
    direction: Direction
    amount: Quantity
    kind: EntryKind
    created_at: datetime
    session_id: str = ""
    request_number: int = 0
    rating_group: int = 0
    reference: str = ""
    reason: str = ""
    seq: int = 0

    @property
    def signed_amount(self) -> int:
        return self.amount.amount if self.direction is Direction.CREDIT else -self.amount.amount
