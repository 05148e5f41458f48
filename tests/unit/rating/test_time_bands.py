"""Time bands in the account's zone, across daylight-saving changes, holidays and midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.domain import BandSchedule, HolidayCalendar, TimeBand
from services.rating.domain.timebands import (
    BandTimeline,
    CompiledSchedule,
    ZoneOffsets,
    band_at_instant,
    epoch_seconds,
    split_by_band,
)

from .support import call, engine_for, voice_rate

D = Decimal
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


def _compiled(
    *bands: TimeBand, default: str = "day", holidays: dict[date, str] | None = None
) -> CompiledSchedule:
    calendar = HolidayCalendar("h", holidays) if holidays else None
    return CompiledSchedule(BandSchedule("s", bands, default, "h" if calendar else None), calendar)


def _split(
    schedule: CompiledSchedule, zone: str, start_utc: datetime, seconds: int
) -> list[tuple[str, int]]:
    return split_by_band(schedule, ZoneOffsets(ZoneInfo(zone)), epoch_seconds(start_utc), seconds)


def test_spring_forward_boundary_inside_the_skipped_hour_takes_effect_at_the_change() -> None:
    # Amsterdam, Sunday 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    # "night" runs 00:00-02:30 local, a time that does not exist that day.
    schedule = _compiled(TimeBand("night", EVERY_DAY, time(0), time(2, 30)))
    parts = _split(schedule, "Europe/Amsterdam", datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 3600)
    # 01:30-02:00 CET is night (1800 s), then the clock reads 03:00: day (1800 s).
    assert parts == [("night", 1800), ("day", 1800)]


def test_fall_back_repeats_a_boundary_inside_the_repeated_hour() -> None:
    # Amsterdam, Sunday 25 October 2026: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
    # "night" runs 00:00-02:45; the wall clock passes 02:45 twice.
    schedule = _compiled(TimeBand("night", EVERY_DAY, time(0), time(2, 45)))
    parts = _split(schedule, "Europe/Amsterdam", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 3600)
    # 02:30-02:45 CEST night, 02:45-03:00 CEST day, 02:00-02:30 CET night again.
    assert parts == [("night", 900), ("day", 900), ("night", 1800)]


def test_call_across_fall_back_is_charged_for_the_time_it_really_lasted() -> None:
    # 02:30 CEST for one real hour ends at 02:30 CET: the wall clock says 0 minutes.
    engine = engine_for([voice_rate(weekend="0.01")])
    from .support import event

    charge = engine.rate(event(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 3600))
    assert charge.charged_units == 3600
    assert charge.gross == D("0.60")  # 60 weekend minutes at 0.01


def test_peak_starts_at_local_08_00_on_both_sides_of_the_dst_change() -> None:
    engine = engine_for([voice_rate()])
    from .support import event

    # 06:30 UTC is 07:30 CET on Friday 27 March (off-peak) and 08:30 CEST on Monday 30 March.
    before = engine.rate(event(datetime(2026, 3, 27, 6, 30, tzinfo=UTC), 60))
    after = engine.rate(event(datetime(2026, 3, 30, 6, 30, tzinfo=UTC), 60))
    assert before.segments[0].band == "offpeak"
    assert after.segments[0].band == "peak"


def test_holiday_band_applies_all_day() -> None:
    schedule = _compiled(
        TimeBand("peak", WEEKDAYS, time(8), time(18)),
        default="offpeak",
        holidays={date(2026, 4, 27): "holiday"},  # King's Day, a Monday
    )
    zone = ZoneOffsets(ZoneInfo("Europe/Amsterdam"))
    noon = epoch_seconds(datetime(2026, 4, 27, 12, tzinfo=ZoneInfo("Europe/Amsterdam")))
    assert band_at_instant(schedule, zone, noon) == "holiday"
    assert band_at_instant(schedule, zone, noon + 86_400) == "peak"


def test_band_wrapping_past_midnight_belongs_to_the_day_it_starts() -> None:
    # Night Mon-Fri 22:00-06:00: Friday night runs into Saturday 06:00, Sunday night is day.
    schedule = _compiled(TimeBand("night", WEEKDAYS, time(22), time(6)))
    utc = ZoneOffsets(ZoneInfo("UTC"))

    def band(text: str) -> str:
        return band_at_instant(schedule, utc, epoch_seconds(datetime.fromisoformat(text)))

    assert band("2026-03-06T23:00:00+00:00") == "night"  # Friday
    assert band("2026-03-07T05:59:59+00:00") == "night"  # Saturday morning, from Friday
    assert band("2026-03-07T06:00:00+00:00") == "day"
    assert band("2026-03-08T23:00:00+00:00") == "day"  # Sunday evening: not listed
    assert band("2026-03-09T05:00:00+00:00") == "day"  # Monday morning: Sunday has no night


def test_first_band_listed_wins_where_bands_overlap() -> None:
    schedule = _compiled(
        TimeBand("lunch", WEEKDAYS, time(12), time(13)),
        TimeBand("peak", WEEKDAYS, time(8), time(18)),
    )
    utc = ZoneOffsets(ZoneInfo("UTC"))
    parts = split_by_band(
        schedule, utc, epoch_seconds(datetime(2026, 3, 2, 11, 30, tzinfo=UTC)), 7200
    )
    assert parts == [("peak", 1800), ("lunch", 3600), ("peak", 1800)]


def test_zone_without_dst_and_a_half_hour_offset() -> None:
    # India is UTC+05:30 all year: local 18:00 is 12:30 UTC.
    schedule = _compiled(TimeBand("peak", WEEKDAYS, time(8), time(18)), default="offpeak")
    parts = _split(schedule, "Asia/Kolkata", datetime(2026, 3, 2, 12, 29, tzinfo=UTC), 120)
    assert parts == [("peak", 60), ("offpeak", 60)]


def test_long_call_over_a_whole_week_visits_every_band() -> None:
    engine = engine_for([voice_rate(weekend="0.01")])
    charge = call(engine, "2026-03-02 00:00", 7 * 86_400)
    seconds: dict[str, int] = {}
    for segment in charge.segments:
        seconds[segment.band] = seconds.get(segment.band, 0) + segment.seconds
    assert seconds == {"peak": 5 * 10 * 3600, "offpeak": 5 * 14 * 3600, "weekend": 2 * 86_400}


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=7 * 86_400),
    st.integers(min_value=1, max_value=9 * 86_400),
    st.sampled_from(["Europe/Amsterdam", "America/Santiago", "Australia/Lord_Howe", "UTC"]),
)
def test_precomputed_timeline_agrees_with_the_walk_through_local_time(
    block: int, shift: int, seconds: int, zone: str
) -> None:
    # The timeline is cut in blocks of 2^25 s; calls start within 3 days of a block edge,
    # in zones with DST (and Lord Howe's half-hour DST), and last up to 9 days.
    schedule = _compiled(
        TimeBand("peak", WEEKDAYS, time(8), time(18)),
        TimeBand("night", EVERY_DAY, time(23), time(2, 30)),
        default="offpeak",
        holidays={date(2026, 12, 25): "holiday"},
    )
    offsets = ZoneOffsets(ZoneInfo(zone))
    edge = ((1_750_000_000 >> 25) + block) << 25
    start = edge - 3 * 86_400 + shift
    assert BandTimeline(schedule, offsets).split(start, seconds) == split_by_band(
        schedule, offsets, start, seconds
    )
