"""Commands and results of charging's admin use cases (already validated at the edge)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from services.charging.domain.accounts import AccountPolicy, AccountState
from services.charging.domain.buckets import Bucket
from services.charging.domain.credit_control import RequestType, SessionState
from services.charging.domain.ledger import LedgerEntry
from services.charging.domain.services import ServiceDefinition
from services.charging.domain.units import Quantity, Unit


@dataclass(frozen=True, slots=True)
class SetPolicy:
    policy: AccountPolicy
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class DefineService:
    definition: ServiceDefinition
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CreateBucket:
    account_id: str
    unit: Unit
    initial: int
    priority: int = 100
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    services: frozenset[str] = frozenset()
    rating_groups: frozenset[int] = frozenset()
    label: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class TopUp:
    account_id: str
    amount: Quantity
    bucket_id: str = ""
    reference: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Adjust:
    account_id: str
    bucket_id: str
    delta: Quantity
    reason: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CloseBucket:
    account_id: str
    bucket_id: str
    reason: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class UpdateBucket:
    """Replace a live bucket's priority, end of validity or label (None: unchanged)."""

    account_id: str
    bucket_id: str
    priority: int | None = None
    valid_until: datetime | None = None
    clear_valid_until: bool = False  # the bucket no longer ends
    label: str | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CreateVoucherBatch:
    count: int
    value: Quantity
    expire_time: datetime
    label: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class RedeemVoucher:
    account_id: str
    code: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class BalanceLine:
    bucket: Bucket
    available: int
    reserved: int
    usable: bool


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account_id: str
    policy: AccountPolicy
    state: AccountState
    lines: tuple[BalanceLine, ...]


@dataclass(frozen=True, slots=True)
class Credited:
    entry: LedgerEntry | None
    balance: BalanceLine


@dataclass(frozen=True, slots=True)
class Forfeited:
    """What a forfeit of an ended bucket did, and what the bucket holds after it."""

    entry: LedgerEntry | None  # None: nothing was available to forfeit
    available: int
    reserved: int


@dataclass(frozen=True, slots=True)
class PolicyView:
    policy: AccountPolicy
    state: AccountState
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseSession:
    """An operator's release of a stuck open credit-control session (ADR 0035)."""

    account_id: str
    session_id: str
    reason: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class SessionGroupView:
    rating_group: int
    granted: Quantity | None  # granted by the last answer and still held
    used: Quantity | None  # reported used in the session so far
    valid_until: datetime | None  # when the grant's validity ends


@dataclass(frozen=True, slots=True)
class SessionView:
    account_id: str
    session_id: str
    state: SessionState
    last_request_number: int
    last_request_type: RequestType | None
    updated_at: datetime | None
    release_at: datetime | None  # when what it holds is released unless usage comes
    rating_groups: tuple[SessionGroupView, ...]


@dataclass(frozen=True, slots=True)
class VoucherBatch:
    batch_id: str
    codes: tuple[str, ...]
    expire_time: datetime


def _canonical(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def fingerprint(command: Any) -> str:
    """SHA-256 of the command without its request id (ADR 0007)."""
    body = _canonical(command)
    if isinstance(body, dict):
        body.pop("request_id", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
