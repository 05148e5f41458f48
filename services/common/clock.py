"""The one clock of Reckon.

Every service takes "now" from a ``Clock`` injected at its composition root, so
tests and the operators' test clock can move time through bill cycles and dunning
levels without sleeping. Instants are always timezone-aware UTC; business dates
are derived from them in the account's time zone by the code that needs them.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: for tests and the operators' test clock."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._now = ensure_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        instant = ensure_utc(instant)
        with self._lock:
            if instant < self._now:
                raise ValueError("a clock does not run backwards")
            self._now = instant


def ensure_utc(instant: datetime) -> datetime:
    """Refuse naive datetimes (their zone is a guess) and normalise to UTC."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant!r}: instants must carry a time zone")
    return instant.astimezone(UTC)
