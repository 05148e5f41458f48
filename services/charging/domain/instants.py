"""Instants as integer milliseconds since the Unix epoch: the form Redis scripts compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def to_ms(instant: datetime) -> int:
    """Exact milliseconds (floor) of an aware instant."""
    return (instant - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * _MS
