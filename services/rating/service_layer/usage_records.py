"""What a line of a usage file becomes: a typed record, a problem with a reason, or a skip.

``RejectReason`` holds the stable words clients and operators branch on; a
``LineProblem`` keeps the raw text (capped at ``MAX_RAW_CHARS``, bad bytes escaped)
so a reject can be inspected and re-processed. ``parse_instant`` reads event
times (ISO 8601 or epoch seconds) within the years every later step can place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Final


class RejectReason:
    """Stable words for why a record was not rated; clients and operators branch on them."""

    MALFORMED_LINE: Final = "MALFORMED_LINE"
    ENCODING: Final = "ENCODING"
    LINE_TOO_LONG: Final = "LINE_TOO_LONG"
    FIELD_TOO_LONG: Final = "FIELD_TOO_LONG"
    MISSING_FIELD: Final = "MISSING_FIELD"
    INVALID_VALUE: Final = "INVALID_VALUE"
    NEGATIVE_QUANTITY: Final = "NEGATIVE_QUANTITY"
    FUTURE_EVENT: Final = "FUTURE_EVENT"
    UNKNOWN_ACCOUNT: Final = "UNKNOWN_ACCOUNT"
    NO_PLAN: Final = "NO_PLAN"
    DUPLICATE: Final = "DUPLICATE"
    UNIT_MISMATCH: Final = "UNIT_MISMATCH"
    NO_CATALOG: Final = "NO_CATALOG"
    # Reasons raised by the tariff engine arrive with its own words (NO_TARIFF,
    # UNKNOWN_PLAN, PLAN_NOT_IN_FORCE, INVALID_NUMBER, UNKNOWN_TAX_REGION ...).


@dataclass(slots=True)
class UsageRecord:
    """One readable record with typed fields; not yet known to be ratable."""

    line: int
    raw: str
    record_id: str
    account_id: str
    service: str
    destination: str
    event_time: datetime
    quantity: int
    unit: str
    amount: Decimal | None


@dataclass(slots=True)
class LineProblem:
    """A line that could not be read as a record."""

    line: int
    raw: str
    reason: str
    message: str
    record_id: str = ""
    account_id: str = ""


@dataclass(slots=True)
class SkippedLine:
    """A line deliberately not rated (e.g. an unanswered call in a switch CDR)."""

    line: int


ParsedLine = UsageRecord | LineProblem | SkippedLine


class LayoutError(Exception):
    """The file as a whole cannot be read with the given options (e.g. header lacks columns)."""


# Raw records are kept for inspection and re-processing, capped so hostile lines stay small.
MAX_RAW_CHARS: Final = 4096


def _escape(data: bytes) -> str:
    # NUL is valid UTF-8 but no PostgreSQL text column takes it: keep it visible, escaped.
    text = data.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return text[:MAX_RAW_CHARS]


_EARLIEST_EVENT: Final = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST_EVENT: Final = datetime(2200, 1, 1, tzinfo=UTC)


def parse_instant(text: str, zone: tzinfo = UTC) -> datetime | None:
    """An aware instant from ISO 8601 (with or without offset; naive means ``zone``)
    or from epoch seconds; None when the text is neither."""
    text = text.strip()
    if not text:
        return None
    try:
        if text.isascii() and text.isdigit():
            moment = datetime.fromtimestamp(int(text), UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            if moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        # Year 1 or 9999 shifted across midnight by an offset leaves datetime's range.
        return None
    # Only instants every step can place in a time zone and a bill cycle: the years
    # 9999 or 0001 of a hostile file would overflow there (and cannot be real usage).
    return moment if _EARLIEST_EVENT <= moment < _LATEST_EVENT else None
