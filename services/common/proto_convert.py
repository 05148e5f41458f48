"""Wire <-> domain translation of shared types (money, time, pages).

Used only by entrypoints. ``money_from_proto`` and friends raise
``InvalidArgument`` naming the request field, so a servicer can translate a
whole request and report every bad field at once through ``Violations``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import timestamp_pb2
from google.type import money_pb2

from services.common.errors import Violations
from services.common.money import MAX_SCALE, Money, MoneyError

_NANOS = Decimal(10) ** MAX_SCALE
_MAX_UNITS = 2**63 - 1


def money_to_proto(money: Money) -> money_pb2.Money:
    units = int(money.amount)  # truncates towards zero, as google.type.Money wants
    nanos = int((money.amount - units) * _NANOS)
    return money_pb2.Money(currency_code=money.currency, units=units, nanos=nanos)


def money_from_proto(
    message: money_pb2.Money, field: str, violations: Violations, *, allow_negative: bool = False
) -> Money | None:
    """A Money from the wire, or None with a violation recorded against ``field``."""
    if not message.currency_code:
        violations.add(f"{field}.currency_code", "is required (ISO 4217, e.g. EUR)")
        return None
    if message.nanos and message.units and (message.units > 0) != (message.nanos > 0):
        violations.add(f"{field}.nanos", "must have the same sign as units")
        return None
    if not -999_999_999 <= message.nanos <= 999_999_999:
        violations.add(f"{field}.nanos", "must be between -999999999 and 999999999")
        return None
    amount = Decimal(message.units) + Decimal(message.nanos) / _NANOS
    if amount < 0 and not allow_negative:
        violations.add(field, "must not be negative")
        return None
    try:
        return Money(amount.normalize() if amount else Decimal(0), message.currency_code)
    except MoneyError as exc:
        violations.add(f"{field}.currency_code", str(exc))
        return None


def timestamp_to_proto(instant: datetime | None) -> timestamp_pb2.Timestamp | None:
    if instant is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant.astimezone(UTC))
    return stamp


def timestamp_from_proto(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


# -- pagination (AIP-158): opaque tokens that encode the last key seen ------------------
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size_from_proto(page_size: int, violations: Violations) -> int:
    if page_size < 0:
        violations.add("page_size", "must not be negative")
        return DEFAULT_PAGE_SIZE
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(cursor: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, sort_keys=True).encode()).decode()


def decode_page_token(token: str, violations: Violations) -> dict[str, str] | None:
    if not token:
        return None
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        violations.add("page_token", "is not a token this service issued")
        return None
    if not isinstance(cursor, dict) or not all(isinstance(v, str) for v in cursor.values()):
        violations.add("page_token", "is not a token this service issued")
        return None
    return cursor
