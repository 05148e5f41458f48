"""Number normalisation, longest-prefix matching and the CSV prefix loader."""

from __future__ import annotations

import time

import pytest

from services.rating.domain import (
    DestinationTable,
    InvalidCatalog,
    InvalidNumber,
    NumberingPlan,
    load_destination_rows,
    normalise_number,
)

NL = NumberingPlan(country_code="31")


@pytest.mark.parametrize(
    ("dialled", "e164"),
    [
        ("+31 6 1234 5678", "31612345678"),
        ("0031612345678", "31612345678"),
        ("0612345678", "31612345678"),  # national number, home country 31
        ("31612345678", "31612345678"),  # already E.164 digits, as switches log them
        ("+44 (20) 7946-0958", "442079460958"),
        ("112", "112"),  # short codes stay as they are
    ],
)
def test_numbers_are_normalised_to_e164_digits(dialled: str, e164: str) -> None:
    assert normalise_number(dialled, NL) == e164


def test_national_numbers_stay_as_written_without_a_home_country() -> None:
    assert normalise_number("0612345678") == "0612345678"


@pytest.mark.parametrize("dialled", ["anonymous", "+", "", "00", "+31 6 12 ab", "1" * 16, "٣١٦"])
def test_what_is_not_a_number_is_refused(dialled: str) -> None:
    with pytest.raises(InvalidNumber) as raised:
        normalise_number(dialled, NL)
    assert raised.value.reason == "INVALID_NUMBER"


def test_longest_prefix_wins() -> None:
    table = DestinationTable.from_sets({"NL": ["31"], "NL Mobile": ["316"], "NL KPN": ["31653"]})
    assert table.match("31201234567") == ("31", "NL")
    assert table.match("31612345678") == ("316", "NL Mobile")
    assert table.match("31653123456") == ("31653", "NL KPN")
    assert table.match("44207946") is None


def test_csv_rows_load_with_plus_signs_and_a_header() -> None:
    rows = [
        ["prefix", "destination"],
        ["+31", "NL"],
        ["316", "NL Mobile"],
        [],
        ["316", "NL Mobile"],
    ]
    table = load_destination_rows(rows, has_header=True)
    assert len(table) == 2
    assert table.prefixes_of("NL Mobile") == ("316",)


def test_csv_problems_name_the_line() -> None:
    rows = [["31", "NL"], ["3x1", "Bad"], ["316"], ["31", "Elsewhere"], ["44", " "]]
    with pytest.raises(InvalidCatalog) as raised:
        load_destination_rows(rows)
    problems = {v.field: v.description for v in raised.value.violations}
    assert set(problems) == {"line[2].prefix", "line[3]", "line[4].prefix", "line[5].name"}
    assert "already belongs to 'NL'" in problems["line[4].prefix"]


def test_fifty_thousand_prefixes_load_well_under_a_second() -> None:
    rows = [[str(3_100_000 + i), f"Destination {i % 500}"] for i in range(60_000)]
    began = time.perf_counter()
    table = load_destination_rows(rows)
    elapsed = time.perf_counter() - began
    assert len(table) == 60_000
    assert table.match("31000123456789") == ("3100012", "Destination 12")
    assert elapsed < 1.0, f"loading took {elapsed:.2f} s"


def test_a_table_without_prefixes_is_refused() -> None:
    # Issue 9 item 9: only a header (or blank lines) is not an empty table but a mistake.
    for rows in ([["prefix", "destination"]], [["prefix", "destination"], [], ["  "]], []):
        with pytest.raises(InvalidCatalog) as failure:
            load_destination_rows(rows, has_header=True)
        [problem] = failure.value.violations
        assert problem.field == "rows"
        assert "no prefixes" in problem.description
