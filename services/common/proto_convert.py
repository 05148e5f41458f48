"""Wire <-> domain translation of shared types (money, time, pages).

Used only by entrypoints. ``money_from_proto`` and friends record a violation
naming the request field, so a servicer can translate a whole request and
report every bad field at once through ``Violations``; ``timestamp_from_proto``
and ``duration_from_proto`` raise ``InvalidArgument`` naming the field. No value
a client can send makes them fail otherwise (a Timestamp before year 1 or after
9999, ``nanos=-1``, an amount beyond 10^15): bad input is INVALID_ARGUMENT, never
INTERNAL.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import duration_pb2, timestamp_pb2
from google.type import money_pb2

from services.common.errors import InvalidArgument, Violations
from services.common.money import MAX_SCALE, Money, MoneyError

_NANOS = Decimal(10) ** MAX_SCALE
# The largest amount any Reckon service accepts on the wire: a quadrillion units
# (charging's MAX_QUANTITY too); int64 max is "out of range", not an overflow later.
MAX_MONEY_UNITS = 10**15
# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# google.protobuf.Duration's documented range: about +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000


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
    if abs(message.units) > MAX_MONEY_UNITS:
        violations.add(f"{field}.units", f"is out of range: at most {MAX_MONEY_UNITS} (10^15)")
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


def timestamp_problem(stamp: timestamp_pb2.Timestamp) -> str | None:
    """Why a Timestamp is not a valid instant, or None."""
    if not 0 <= stamp.nanos <= 999_999_999:
        return "nanos must be between 0 and 999999999"
    if not MIN_TIMESTAMP_SECONDS <= stamp.seconds <= MAX_TIMESTAMP_SECONDS:
        return "is out of range: must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    return None


def timestamp_from_proto(stamp: timestamp_pb2.Timestamp, field: str = "timestamp") -> datetime:
    """The instant of a Timestamp; ``InvalidArgument`` naming ``field`` when it is not one."""
    problem = timestamp_problem(stamp)
    if problem is not None:
        raise InvalidArgument.field(field, problem)
    return stamp.ToDatetime(tzinfo=UTC)


def checked_timestamp(
    stamp: timestamp_pb2.Timestamp, field: str, violations: Violations
) -> datetime | None:
    """Like ``timestamp_from_proto`` but records the violation (None) instead of raising."""
    problem = timestamp_problem(stamp)
    if problem is not None:
        violations.add(field, problem)
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def duration_from_proto(duration: duration_pb2.Duration, field: str = "duration") -> timedelta:
    """A Duration as a timedelta; ``InvalidArgument`` naming ``field`` when it is malformed."""
    seconds, nanos = duration.seconds, duration.nanos
    if not -999_999_999 <= nanos <= 999_999_999 or (
        seconds and nanos and (seconds > 0) != (nanos > 0)
    ):
        raise InvalidArgument.field(
            field, "nanos must be between -999999999 and 999999999, with the sign of seconds"
        )
    if abs(seconds) > MAX_DURATION_SECONDS:
        raise InvalidArgument.field(field, "is out of range: at most 10,000 years")
    try:
        return timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:  # beyond timedelta's +-999,999,999 days
        raise InvalidArgument.field(field, "is out of range") from None


def duration_to_proto(delta: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(delta)
    return duration


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
