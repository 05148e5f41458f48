"""The one clock of Reckon, and the suite-wide test clock.

Every service takes "now" from a ``Clock`` injected at its composition root, so
tests and the operators' test clock can move time through bill cycles and dunning
levels without sleeping. Instants are always timezone-aware UTC; business dates
are derived from them in the account's time zone by the code that needs them.

The API every service uses (ADR 0037):

- ``clock = clock_from_config(settings)`` in ``bootstrap.py``: the machine's
  clock, or, when the suite runs in test-clock mode (``RECKON_TEST_CLOCK=1``,
  set by ``reckon up --test-clock``), a ``SharedTestClock`` that every process
  of the suite reads from Redis (key ``reckon:test-clock``). Call
  ``close_clock(clock)`` when the service stops.
- ``clock.now()``: the current instant, never ``datetime.now()``.
- ``await clock_sleep(clock, seconds, stop=stop)`` in every scheduler loop
  instead of ``asyncio.sleep``/``wait_for(stop.wait())``: it returns after
  ``seconds`` of real time, or as soon as ``stop`` is set, or as soon as the
  clock is moved (``reckon clock advance 31d``), so the loop re-reads ``now()``
  and does what fell due at once.
- ``await sleep_until(clock, instant, stop=stop)``: wait until the clock shows
  ``instant`` (returns early, False, when ``stop`` is set).

The test clock runs at the machine's rate from where it was last moved (an
offset over wall time, shared by every process): leases, timeouts and session
validity keep flowing, and ``advance``/``set`` jump it forward, never back.
It cannot be enabled when ``RECKON_ENV=production``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import redis
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

TEST_CLOCK_KEY = "reckon:test-clock"
TEST_CLOCK_ENV = "RECKON_TEST_CLOCK"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


Listener = Callable[[], None]


@runtime_checkable
class MovableClock(Protocol):
    """A clock that tells listeners when it is moved (so sleepers wake up)."""

    def now(self) -> datetime: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (from any thread) after each move; returns an unsubscribe."""
        ...


class _Listeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener's loop may be closed: never break the mover
                log.debug("clock listener failed", exc_info=True)


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock(_Listeners):
    """A clock that only moves when told to: for tests of one process."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__()
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
            moved = self._now
        self._notify()
        return moved

    def set(self, instant: datetime) -> None:
        instant = ensure_utc(instant)
        with self._lock:
            if instant < self._now:
                raise ValueError("a clock does not run backwards")
            self._now = instant
        self._notify()


class TestClockError(RuntimeError):
    """The shared test clock cannot be read or moved."""


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class SharedTestClock(_Listeners):
    """The suite's test clock: wall time plus an offset every process reads from Redis.

    ``now()`` never does I/O: a daemon thread re-reads the offset every
    ``poll_interval`` seconds and notifies subscribers when it changed. Moves
    (``advance``/``set``) write Redis atomically and take effect here at once.
    """

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(
        self,
        redis_url: str,
        *,
        key: str = TEST_CLOCK_KEY,
        poll_interval: float = 0.2,
        wall: Clock | None = None,
    ) -> None:
        super().__init__()
        import redis as redis_sync  # a kit module: the import stays out of domain code

        self._client: redis.Redis = redis_sync.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self._key = key
        self._poll_interval = poll_interval
        self._wall = wall or SystemClock()
        self._offset_us = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    # --- reading ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self._wall.now() + timedelta(microseconds=self._offset_us)

    @property
    def offset(self) -> timedelta:
        return timedelta(microseconds=self._offset_us)

    def refresh(self) -> bool:
        """Re-read the shared offset; True (and listeners told) when it moved."""
        raw = self._client.get(self._key)
        offset = int(raw) if raw is not None else 0
        if offset == self._offset_us:
            return False
        self._offset_us = offset
        self._notify()
        return True

    def start(self) -> SharedTestClock:
        """Read the offset once, then follow it from a daemon thread."""
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - Redis down at start: follow it once back
            log.warning("test clock: cannot read %s yet (%s)", self._key, exc)
        self._thread = threading.Thread(target=self._follow, name="test-clock", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        # Five reads a second are not work anyone wants traced: without this each one
        # would be a root span of its own in the suite's traces.
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        while not self._stop.wait(self._poll_interval):
            try:
                with suppress_instrumentation():
                    self.refresh()
                if self._failing:
                    log.info("test clock: %s readable again", self._key)
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - the follower must outlive any Redis error
                if not self._failing:
                    log.warning(
                        "test clock: cannot read %s (%s); keeping the last offset", self._key, exc
                    )
                self._failing = True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._client.close()

    # --- moving (the `reckon clock` command) ---------------------------------------------

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not run backwards")
        self._offset_us = int(self._client.incrby(self._key, _micros(delta)))
        self._remember_mover()
        self._notify()
        return self.now()

    def set(self, instant: datetime) -> datetime:
        """Move to ``instant``; refused if that is before the clock's current time."""
        instant = ensure_utc(instant)
        wall = self._wall.now()
        # One script: the check and the write cannot be split by another mover.
        moved, offset = self._client.eval(  # type: ignore[no-untyped-call]
            _SET_SCRIPT, 1, self._key, _micros(instant - _EPOCH), _micros(wall - _EPOCH)
        )
        self._offset_us = int(offset)
        if not moved:
            raise ValueError(f"a clock does not run backwards (it shows {self.now().isoformat()})")
        self._remember_mover()
        self._notify()
        return self.now()

    # --- who moved it (ADR 0054) ---------------------------------------------------------

    def _remember_mover(self) -> None:
        """Keep the mover's trace context beside the offset it wrote.

        Work that a scheduler starts *because* the clock moved (the daily bill run)
        continues the mover's trace, so ``reckon demo``'s story is one trace across
        the jump. Remembered per offset: a later move by someone untraced clears it.
        """
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        parent = carrier.get("traceparent", "")
        self._client.set(f"{self._key}:moved-by", f"{self._offset_us}|{parent}", ex=86_400)

    def move_context(self) -> Context | None:
        """The trace context of whoever made the current offset, if it was traced."""
        from opentelemetry import propagate

        raw = self._client.get(f"{self._key}:moved-by")
        if raw is None:
            return None
        offset, _, parent = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("|")
        if not parent or offset != str(self._offset_us):
            return None
        return propagate.extract({"traceparent": parent})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SET_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local instant, wall = tonumber(ARGV[1]), tonumber(ARGV[2])
if instant < wall + current then return {0, string.format('%.0f', current)} end
local offset = string.format('%.0f', instant - wall)
redis.call('SET', KEYS[1], offset)
return {1, offset}
"""


class ClockSettings(Protocol):
    """What ``clock_from_config`` reads from a service's settings."""

    @property
    def redis_url(self) -> str: ...

    @property
    def test_clock(self) -> bool: ...


def clock_from_config(settings: ClockSettings) -> Clock:
    """The clock a service runs on: the machine's, or the suite's shared test clock."""
    if settings.test_clock:
        log.warning("TEST CLOCK: 'now' is the suite's shared test clock, not the machine's")
        return SharedTestClock(settings.redis_url).start()
    return SystemClock()


def close_clock(clock: Clock) -> None:
    """Stop a shared test clock's thread; nothing to do for the others."""
    if isinstance(clock, SharedTestClock):
        clock.close()


async def clock_sleep(clock: Clock, seconds: float, *, stop: asyncio.Event | None = None) -> None:
    """Sleep ``seconds`` of real time; return early when ``stop`` is set or the clock moves."""
    if stop is not None and stop.is_set():
        return
    woken = asyncio.Event()
    loop = asyncio.get_running_loop()
    unsubscribe: Callable[[], None] | None = None
    if isinstance(clock, MovableClock):

        def on_move() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(woken.set)

        unsubscribe = clock.subscribe(on_move)
    waiters = [asyncio.ensure_future(woken.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        if unsubscribe is not None:
            unsubscribe()


async def sleep_until(
    clock: Clock, instant: datetime, *, stop: asyncio.Event | None = None, check_every: float = 60.0
) -> bool:
    """Wait until ``clock.now() >= instant``; False if ``stop`` was set first."""
    instant = ensure_utc(instant)
    while True:
        if stop is not None and stop.is_set():
            return False
        remaining = (instant - clock.now()).total_seconds()
        if remaining <= 0:
            return True
        await clock_sleep(clock, min(remaining, check_every), stop=stop)


def parse_duration(text: str) -> timedelta:
    """``3d``, ``12h``, ``30m``, ``45s``, ``2w`` or a sum of them (``1d12h``)."""
    import re

    units = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
    cleaned = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([wdhms])", cleaned)
    if not cleaned or re.sub(r"\d+\s*[wdhms]", "", cleaned).strip() or not parts:
        raise ValueError(f"expected a duration like 3d, 12h, 30m, 1d12h; got {text!r}")
    return timedelta(seconds=sum(int(n) * units[u] for n, u in parts))


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a zone (``2027-01-01T00:00Z``); a bare date means 00:00 UTC."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    value = datetime.fromisoformat(cleaned)
    if value.tzinfo is None:
        if "T" in cleaned or " " in cleaned:
            raise ValueError(f"{text!r} has no time zone: add Z or an offset")
        value = value.replace(tzinfo=UTC)
    return ensure_utc(value)


def ensure_utc(instant: datetime) -> datetime:
    """Refuse naive datetimes (their zone is a guess) and normalise to UTC."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant!r}: instants must carry a time zone")
    return instant.astimezone(UTC)
