"""Reading usage files: every line becomes a record, a problem with its reason, or a skip."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import Violations
from services.rating.service_layer.usage_formats import (
    ImportOptions,
    LayoutError,
    LineProblem,
    SkippedLine,
    UsageFileReader,
    UsageRecord,
    parse_instant,
    parse_stored_record,
)

HEADER = b"record_id,account_id,service,destination,event_time,quantity\n"


def read(data: bytes, **options: Any) -> list[Any]:
    limits: dict[str, Any] = {
        k: options.pop(k)
        for k in ("max_line_bytes", "max_field_chars", "start_after_line")
        if k in options
    }
    return list(UsageFileReader(io.BytesIO(data), ImportOptions(**options), **limits))


def reasons(items: list[object]) -> list[tuple[int, str]]:
    return [(i.line, i.reason) for i in items if isinstance(i, LineProblem)]


def test_a_good_line_becomes_a_typed_record() -> None:
    [record] = read(HEADER + b"r1,acc,voice,+31 20 555,2026-03-02T10:00:00+01:00,60\n")
    assert isinstance(record, UsageRecord)
    assert (record.line, record.record_id, record.account_id, record.service) == (
        2,
        "r1",
        "acc",
        "voice",
    )
    assert record.event_time == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert record.quantity == 60


def test_each_bad_line_is_named_by_line_and_reason() -> None:
    data = (
        HEADER
        + b"ok,acc,voice,1,2026-03-02T09:00:00Z,1\n"  # 2
        + b"\xff\xfe,acc,voice,1,2026-03-02T09:00:00Z,1\n"  # 3
        + b"short,acc\n"  # 4
        + b"neg,acc,voice,1,2026-03-02T09:00:00Z,-1\n"  # 5
        + b"frac,acc,voice,1,2026-03-02T09:00:00Z,1.5\n"  # 6
        + b"when,acc,voice,1,soon,1\n"  # 7
        + b",acc,voice,1,2026-03-02T09:00:00Z,1\n"  # 8
        + b'q,acc,voice,"1,2026-03-02T09:00:00Z,1\n'  # 9
        + b"nul,acc\x00,voice,1,2026-03-02T09:00:00Z,1\n"  # 10
        + b"   \n"
    )  # 11 blank: ignored
    assert reasons(read(data)) == [
        (3, "ENCODING"),
        (4, "MISSING_FIELD"),
        (5, "NEGATIVE_QUANTITY"),
        (6, "INVALID_VALUE"),
        (7, "INVALID_VALUE"),
        (8, "MISSING_FIELD"),
        (9, "MALFORMED_LINE"),
        (10, "ENCODING"),
    ]


def test_huge_lines_and_fields_are_refused_without_keeping_them() -> None:
    data = HEADER + b"a," + b"x" * 100_000 + b"\n" + b"b,acc,voice," + b"9" * 300 + b",1,1\n"
    items = read(data, max_line_bytes=1024, max_field_chars=100)
    assert reasons(items) == [(2, "LINE_TOO_LONG"), (3, "FIELD_TOO_LONG")]
    assert len(items[0].raw) <= 200


def test_header_without_required_columns_is_a_layout_error() -> None:
    with pytest.raises(LayoutError, match="account_id"):
        read(b"record_id,service,event_time,quantity\nr,voice,2026-01-01,1\n")


def test_mapping_by_column_number_without_header() -> None:
    options = {
        "has_header": False,
        "columns": {
            "record_id": "1",
            "account_id": "2",
            "destination": "3",
            "event_time": "4",
            "quantity": "5",
        },
        "default_service": "sms",
    }
    [record] = read(b"r9,acc,+4930,1772442000,1\n", **options)
    assert isinstance(record, UsageRecord)
    assert record.service == "sms"
    assert record.event_time == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_asterisk_preset_rates_answered_calls_only() -> None:
    answered = (
        b'"acc","100","0612345678","ctx","","SIP/1","SIP/2","Dial","",'
        b'"2026-03-02 10:00:00","2026-03-02 10:00:05","2026-03-02 10:01:05","65","60",'
        b'"ANSWERED","DOCUMENTATION","1772442000.7",""\n'
    )
    busy = answered.replace(b'"ANSWERED"', b'"BUSY"').replace(b"000.7", b"000.8")
    items = read(answered + busy, preset="asterisk", source_time_zone="Europe/Amsterdam")
    record, skipped = items
    assert isinstance(record, UsageRecord)
    assert isinstance(skipped, SkippedLine)
    assert (record.record_id, record.quantity, record.service) == ("1772442000.7", 60, "voice")
    assert record.event_time == datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)


def test_json_lines_with_bad_values() -> None:
    data = (
        b'{"record_id":"j1","account_id":"a","service":"data","event_time":'
        b'"2026-03-02T09:00:00Z","quantity":1048576}\n'
        b'{"record_id":"j2","account_id":"a","service":"data","event_time":'
        b'"2026-03-02T09:00:00Z","quantity":true}\n'
        b'{"record_id":"j3\\u0000","account_id":"a"}\n'
        b"[1,2]\n{not json\n"
    )
    items = read(data, format="jsonl")
    assert isinstance(items[0], UsageRecord)
    assert items[0].quantity == 1048576
    assert reasons(items) == [
        (2, "INVALID_VALUE"),
        (3, "INVALID_VALUE"),
        (4, "MALFORMED_LINE"),
        (5, "MALFORMED_LINE"),
    ]


def test_resume_skips_lines_already_handled_but_keeps_numbering() -> None:
    data = HEADER + b"".join(
        f"r{i},acc,voice,1,2026-03-02T09:00:00Z,1\n".encode() for i in range(5)
    )
    items = read(data, start_after_line=4)
    assert [i.line for i in items] == [5, 6]


def test_a_stored_reject_is_read_again_with_its_files_header() -> None:
    options = ImportOptions(columns={"record_id": "id"})
    header = "id,account_id,service,destination,event_time,quantity"
    again = parse_stored_record(
        "x1,acc,voice,1,2026-03-02T09:00:00Z,3",
        17,
        options,
        header,
        max_line_bytes=1024,
        max_field_chars=100,
    )
    assert isinstance(again, UsageRecord)
    assert (again.line, again.record_id, again.quantity) == (17, "x1", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02 10:00:00+01:00", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("1772442000", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("not a time", None),
        ("99999999999999999999", None),
    ],
)
def test_instants(text: str, expected: datetime | None) -> None:
    assert parse_instant(text) == expected


def test_options_name_every_bad_field() -> None:
    violations = Violations("options")
    ImportOptions(
        format="xml",
        preset="nope",
        columns={"bogus": "x", "record_id": ""},
        source_time_zone="Nowhere/City",
    ).validate(violations)
    assert {v.field for v in violations.items} == {
        "options.format",
        "options.preset",
        "options.columns[bogus]",
        "options.columns[record_id]",
        "options.source_time_zone",
    }


def test_identifiers_of_bad_lines_fit_their_columns_and_carry_no_nul() -> None:
    [short] = read(HEADER + b"r1," + b"a" * 200 + b",voice\n")
    assert short.reason == "MISSING_FIELD"
    assert len(short.account_id) == 64
    [bad_json] = read(
        b'{"record_id": "x\\u0000y", "account_id": "acc", "quantity": []}\n', format="jsonl"
    )
    assert bad_json.reason == "INVALID_VALUE"
    assert "\x00" not in bad_json.record_id
