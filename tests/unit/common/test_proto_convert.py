"""Every Timestamp/Duration/Money a client can send converts or is refused naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.type import money_pb2

from services.common.errors import InvalidArgument, Violations
from services.common.proto_convert import (
    checked_timestamp,
    duration_from_proto,
    duration_to_proto,
    money_from_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (-62_135_596_801, 0),  # one second before year 1
        (INT64_MIN, 0),
        (INT64_MAX, 0),
        (253_402_300_800, 0),  # 10000-01-01
        (0, -1),
        (0, 1_000_000_000),
        (1_700_000_000, -2_147_483_648),
    ],
)
def test_a_timestamp_that_is_no_instant_is_invalid_argument_naming_its_field(
    seconds: int, nanos: int
) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    with pytest.raises(InvalidArgument) as caught:
        timestamp_from_proto(stamp, "bucket.valid_from")
    assert [v.field for v in caught.value.violations] == ["bucket.valid_from"]
    violations = Violations()
    assert checked_timestamp(stamp, "period_start", violations) is None
    assert [v.field for v in violations.items] == ["period_start"]


def test_the_ends_of_the_timestamp_range_convert() -> None:
    first = timestamp_pb2.Timestamp(seconds=-62_135_596_800)
    last = timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999)
    assert timestamp_from_proto(first) == datetime(1, 1, 1, tzinfo=UTC)
    assert timestamp_from_proto(last).year == 9999
    instant = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)
    stamp = timestamp_to_proto(instant)
    assert stamp is not None
    assert timestamp_from_proto(stamp) == instant


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(INT64_MAX, 0), (INT64_MIN, 0), (315_576_000_001, 0), (1, -1), (-1, 1), (0, 1_000_000_000)],
)
def test_a_bad_duration_is_invalid_argument_naming_its_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        duration_from_proto(duration_pb2.Duration(seconds=seconds, nanos=nanos), "grace")
    assert [v.field for v in caught.value.violations] == ["grace"]


def test_durations_round_trip() -> None:
    for delta in (timedelta(0), timedelta(days=31), -timedelta(seconds=1, microseconds=5)):
        assert duration_from_proto(duration_to_proto(delta)) == delta


@pytest.mark.parametrize("units", [INT64_MAX, INT64_MIN + 1, 10**15 + 1])
def test_an_int64_max_amount_is_out_of_range(units: int) -> None:
    violations = Violations()
    money = money_pb2.Money(currency_code="EUR", units=units)
    assert money_from_proto(money, "amount", violations, allow_negative=True) is None
    assert [(v.field, v.description.split(":")[0]) for v in violations.items] == [
        ("amount.units", "is out of range")
    ]


def test_the_largest_accepted_amount_converts_exactly() -> None:
    violations = Violations()
    money = money_pb2.Money(currency_code="EUR", units=10**15, nanos=999_999_999)
    converted = money_from_proto(money, "amount", violations)
    assert converted is not None
    assert str(converted.amount) == "1000000000000000.999999999"
