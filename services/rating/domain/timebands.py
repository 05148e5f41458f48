"""Time bands: which part of the week (peak, off-peak, weekend, holiday) an instant is in.

A ``BandSchedule`` names bands by weekday and local wall-clock range
("peak: Mon-Fri 08:00-18:00", "weekend: Sat-Sun"), a default band for the rest
of the week, and optionally a ``HolidayCalendar`` whose dates use a given band
all day. Bands are evaluated in the **account's** IANA time zone, so the same
UTC instant can be peak for one customer and off-peak for another.

DST rule: the band of an instant is the band of the local wall-clock time at
that instant. On a spring-forward day a boundary inside the skipped hour takes
effect at the transition; on a fall-back day a boundary inside the repeated
hour is crossed twice. Durations are real elapsed seconds, so a call across
the fall-back transition is charged for the hour it really lasted.

``split_by_band`` is the reference: it walks through local time with the
schedule compiled to sorted boundaries per weekday (``CompiledSchedule``) and the
zone's UTC offsets with the instants they change (``ZoneOffsets``). For rating,
``BandTimeline`` runs that walk once per schedule, zone and ~year and keeps the
UTC instants at which the band changes, so splitting a call is one bisection.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

T = TypeVar("T")

SECONDS_PER_DAY: Final = 86_400
# 1970-01-01, the epoch day 0, was a Thursday (Monday = 0).
_EPOCH_WEEKDAY: Final = 3
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# Band every instant falls in when a plan has no schedule; rates price it with "*".
ANY_BAND: Final = "*"
WEEKDAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Offsets are computed per block of 2^25 s (~388 days) and cached.
_BLOCK_BITS: Final = 25
# Zones change offset at most a few times a year; probing every 6 h finds every change.
_PROBE_STEP: Final = 6 * 3600
# Blocks kept per zone or timeline: usage spans a few years at most, and a bound keeps
# records with wild dates from filling memory (the oldest block computed is dropped).
_BLOCKS_KEPT: Final = 16


def _keep(blocks: dict[int, T], block: int, value: T) -> T:
    if len(blocks) >= _BLOCKS_KEPT:
        del blocks[next(iter(blocks))]
    blocks[block] = value
    return value


@dataclass(frozen=True, slots=True)
class TimeBand:
    """A named part of the week: on ``weekdays`` (0 = Monday) from ``start`` to ``end``.

    ``start`` is inclusive, ``end`` exclusive; ``end`` 00:00 means midnight at the
    end of the day. An ``end`` before ``start`` wraps past midnight: "night,
    Mon-Fri, 22:00-06:00" covers Monday 22:00 to Tuesday 06:00 and so on, the
    weekdays naming the day the band starts.
    """

    name: str
    weekdays: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class HolidayCalendar:
    """Dates that use one band all day (public holidays priced as weekend, say)."""

    code: str
    holidays: Mapping[date, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BandSchedule:
    """Bands in priority order (the first that covers an instant wins), a default band
    for uncovered time, and an optional holiday calendar (by code)."""

    code: str
    bands: tuple[TimeBand, ...]
    default_band: str
    calendar: str | None = None

    def band_names(self, calendar: HolidayCalendar | None = None) -> frozenset[str]:
        """Every band this schedule can produce: the bands, the default and holiday bands."""
        names = {band.name for band in self.bands} | {self.default_band}
        if calendar is not None:
            names |= set(calendar.holidays.values())
        return frozenset(names)


def seconds_of_day(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def epoch_day(day: date) -> int:
    return day.toordinal() - _EPOCH_ORDINAL


class CompiledSchedule:
    """A schedule as sorted boundaries per weekday, and holidays by epoch day."""

    __slots__ = ("_holidays", "_names", "_starts", "code")

    def __init__(self, schedule: BandSchedule, calendar: HolidayCalendar | None) -> None:
        self.code = schedule.code
        pieces: list[list[tuple[int, int, str]]] = [[] for _ in range(7)]
        for band in schedule.bands:
            start, end = seconds_of_day(band.start), seconds_of_day(band.end)
            for weekday in band.weekdays:
                if end == 0 or end > start:
                    pieces[weekday].append((start, end or SECONDS_PER_DAY, band.name))
                else:  # wraps past midnight into the next day
                    pieces[weekday].append((start, SECONDS_PER_DAY, band.name))
                    pieces[(weekday + 1) % 7].append((0, end, band.name))
        self._starts: list[list[int]] = []
        self._names: list[list[str]] = []
        for weekday in range(7):
            # pieces keep declaration order, so the first band covering a point wins.
            bounds = {0} | {s for s, _, _ in pieces[weekday]} | {e for _, e, _ in pieces[weekday]}
            cuts = sorted(bounds)
            starts: list[int] = []
            names: list[str] = []
            for cut in cuts:
                if cut >= SECONDS_PER_DAY:
                    continue
                name = next(
                    (n for s, e, n in pieces[weekday] if s <= cut < e), schedule.default_band
                )
                if not names or names[-1] != name:
                    starts.append(cut)
                    names.append(name)
            self._starts.append(starts)
            self._names.append(names)
        self._holidays: dict[int, str] = (
            {epoch_day(day): name for day, name in calendar.holidays.items()} if calendar else {}
        )

    def band_at(self, day: int, second: int) -> tuple[str, int]:
        """Band at local epoch ``day`` and ``second`` of that day, and the second of the day
        (86400 at most) at which the band may next change."""
        holiday = self._holidays.get(day)
        if holiday is not None:
            return holiday, SECONDS_PER_DAY
        weekday = (day + _EPOCH_WEEKDAY) % 7
        starts = self._starts[weekday]
        index = bisect_right(starts, second) - 1
        following = starts[index + 1] if index + 1 < len(starts) else SECONDS_PER_DAY
        return self._names[weekday][index], following


class ZoneOffsets:
    """UTC offsets of one IANA zone and the instants they change, cached per ~year."""

    __slots__ = ("_blocks", "zone")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._blocks: dict[int, tuple[list[int], list[int]]] = {}

    def offset_at(self, instant: int) -> tuple[int, int]:
        """(UTC offset in seconds, epoch second it holds until) at epoch second ``instant``."""
        block = instant >> _BLOCK_BITS
        changes = self._blocks.get(block)
        if changes is None:
            changes = _keep(self._blocks, block, self._compute(block))
        starts, offsets = changes
        index = bisect_right(starts, instant) - 1
        if index + 1 < len(starts):
            return offsets[index], starts[index + 1]
        return offsets[index], (block + 1) << _BLOCK_BITS

    def _offset(self, instant: int) -> int:
        offset = datetime.fromtimestamp(instant, self.zone).utcoffset() or timedelta(0)
        return offset.days * SECONDS_PER_DAY + offset.seconds

    def _compute(self, block: int) -> tuple[list[int], list[int]]:
        first = block << _BLOCK_BITS
        end = first + (1 << _BLOCK_BITS)
        starts, offsets = [first], [self._offset(first)]
        before = first
        while before < end:
            after = min(before + _PROBE_STEP, end)
            offset = self._offset(after)
            if offset != offsets[-1]:
                low, high = before, after  # offset changes in (low, high]
                while high - low > 1:
                    middle = (low + high) // 2
                    if self._offset(middle) == offsets[-1]:
                        low = middle
                    else:
                        high = middle
                if high < end:
                    starts.append(high)
                    offsets.append(offset)
            before = after
        return starts, offsets


def split_by_band(
    schedule: CompiledSchedule | None, zone: ZoneOffsets, start: int, seconds: int
) -> list[tuple[str, int]]:
    """Cut ``seconds`` of real time from epoch second ``start`` into (band, seconds) parts.

    Consecutive parts always have different bands. Without a schedule every instant
    is in ``ANY_BAND``.
    """
    if schedule is None:
        return [(ANY_BAND, seconds)]
    parts: list[tuple[str, int]] = []
    moment, remaining = start, seconds
    while True:
        offset, offset_until = zone.offset_at(moment)
        day, second = divmod(moment + offset, SECONDS_PER_DAY)
        band, following = schedule.band_at(day, second)
        until = moment + (following - second)
        if offset_until < until:
            until = offset_until
        length = until - moment
        if length >= remaining:
            length = remaining
        if parts and parts[-1][0] == band:
            parts[-1] = (band, parts[-1][1] + length)
        else:
            parts.append((band, length))
        remaining -= length
        if remaining <= 0:
            return parts
        moment = until


class BandTimeline:
    """The instants (UTC) at which one schedule changes band in one zone, per ~year block.

    Built on first use from ``split_by_band`` (the reference walk through local time),
    so rating a call is one bisection in a sorted list of band changes: the band at
    the start, and whether the call ends before the next change.
    """

    __slots__ = ("_blocks", "_schedule", "_zone")

    def __init__(self, schedule: CompiledSchedule | None, zone: ZoneOffsets) -> None:
        self._schedule = schedule
        self._zone = zone
        self._blocks: dict[int, tuple[list[int], list[str]]] = {}

    def split(self, start: int, seconds: int) -> list[tuple[str, int]]:
        """``split_by_band(schedule, zone, start, seconds)``, from the precomputed changes."""
        if self._schedule is None:
            return [(ANY_BAND, seconds)]
        end = start + seconds
        parts: list[tuple[str, int]] = []
        moment = start
        while True:
            block = moment >> _BLOCK_BITS
            changes = self._blocks.get(block)
            if changes is None:
                changes = self._build(block)
            starts, bands = changes
            index = bisect_right(starts, moment) - 1
            band = bands[index]
            until = starts[index + 1]  # the block's end is always listed last
            length = (end if until >= end else until) - moment
            if parts and parts[-1][0] == band:
                parts[-1] = (band, parts[-1][1] + length)
            else:
                parts.append((band, length))
            if until >= end:
                return parts
            moment = until

    def _build(self, block: int) -> tuple[list[int], list[str]]:
        assert self._schedule is not None
        first = block << _BLOCK_BITS
        starts = [first]
        bands: list[str] = []
        for band, length in split_by_band(self._schedule, self._zone, first, 1 << _BLOCK_BITS):
            bands.append(band)
            starts.append(starts[-1] + length)
        return _keep(self._blocks, block, (starts, bands))


def band_at_instant(schedule: CompiledSchedule | None, zone: ZoneOffsets, instant: int) -> str:
    """The band of one epoch second (for pricing that does not split, and for tests)."""
    return split_by_band(schedule, zone, instant, 1)[0][0]


def epoch_seconds(instant: datetime) -> int:
    """Whole epoch seconds of an aware datetime, without going through float."""
    delta = instant - _EPOCH
    return delta.days * SECONDS_PER_DAY + delta.seconds


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Stand-ins for "since always" and "until further notice" in validity windows.
BEGINNING: Final = -(2**62)
FOREVER: Final = 2**62


def epoch_window(valid_from: datetime | None, valid_to: datetime | None) -> tuple[int, int]:
    """A validity window [from, to) in epoch seconds; None ends are open."""
    for moment in (valid_from, valid_to):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{moment!r} needs a UTC offset: validity is an instant")
    return (
        BEGINNING if valid_from is None else epoch_seconds(valid_from),
        FOREVER if valid_to is None else epoch_seconds(valid_to),
    )


__all__ = [
    "ANY_BAND",
    "BEGINNING",
    "FOREVER",
    "WEEKDAY_NAMES",
    "BandSchedule",
    "BandTimeline",
    "CompiledSchedule",
    "HolidayCalendar",
    "TimeBand",
    "ZoneOffsets",
    "band_at_instant",
    "epoch_day",
    "epoch_seconds",
    "epoch_window",
    "seconds_of_day",
    "split_by_band",
]
