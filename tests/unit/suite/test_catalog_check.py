"""``reckon catalog check`` offline: every problem named by the file's line and field path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.common.errors import FieldViolation
from suite.catalog_check import (
    DestinationsError,
    DocumentProblem,
    check_document,
    load_destinations,
    locate,
)
from suite.rating_cli import catalog_app

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "catalog.yaml"

BROKEN = """\
products:
  - {code: voice, unit: second}
destinations:
  - {name: NL, prefixes: ["31"]}
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        colour: blue
        rates:
          - id: nl
            service: voice
            destination: NL
            first_increment: 0
            next_increment: 60
            prices: {"*": {first: "0.10", next: "0.10"}}
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def problems_by_path(problems: list[DocumentProblem]) -> dict[str, int | None]:
    return {p.path: p.line for p in problems}


def test_every_problem_names_its_line_and_field_path() -> None:
    result = check_document(BROKEN)
    assert not result.valid
    assert result.catalog is None
    assert problems_by_path(result.problems) == {
        "plans[0].versions[0].colour": 11,
        "plans[0].versions[0].rates[0].first_increment": 16,
    }
    rendered = [p.render("catalog.yaml") for p in result.problems]
    assert "catalog.yaml:16: plans[0].versions[0].rates[0].first_increment: must be " in (
        "\n".join(rendered)
    )


def test_the_sample_catalog_is_valid() -> None:
    result = check_document(SAMPLE.read_text(encoding="utf-8"))
    assert result.valid, result.problems
    assert result.catalog is not None
    assert "conference-pro" in result.catalog.plan_codes()


def test_a_broken_copy_of_the_sample_points_at_the_broken_lines() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    # Break the third rate (de-fixed) and the plan's currency.
    rate_start = text.index("- id: de-fixed")
    increment = text.index("first_increment: 60", rate_start)
    broken = (
        text[:increment] + "first_increment: 0" + text[increment + len("first_increment: 60") :]
    )
    broken = broken.replace("    currency: EUR", "    currency: EURO", 1)

    problems = problems_by_path(check_document(broken).problems)

    assert problems == {
        "plans[0].currency": line_of(broken, "currency: EURO"),
        "plans[0].versions[0].rates[2].first_increment": line_of(broken, "first_increment: 0"),
    }


def test_a_missing_field_points_at_the_object_that_lacks_it() -> None:
    text = BROKEN.replace("            next_increment: 60\n", "").replace("colour: blue", "")
    text = text.replace("first_increment: 0", "first_increment: 60")
    problems = check_document(text).problems
    missing = next(p for p in problems if p.path.endswith("next_increment"))
    assert missing.line == line_of(text, "- id: nl")  # the rate that lacks it


def test_json_documents_get_lines_too_even_when_indented_with_tabs() -> None:
    text = (
        '{\n\t"plans": [\n\t\t{"code": "x", "currency": "EUR",\n'
        '\t\t "versions": [{"version": 1, "valid_from": "2026-01-01", "colour": "blue"}]}\n'
        "\t]\n}\n"
    )
    problems = check_document(text, json_document=True).problems
    assert problems_by_path(problems)["plans[0].versions[0].colour"] == 4


def test_a_syntax_error_names_its_line() -> None:
    problems = check_document("plans:\n  - code: x\n    currency: [EUR\n").problems
    assert len(problems) == 1
    assert problems[0].path == ""
    assert problems[0].line == 4
    assert problems[0].render("c.yaml").startswith("c.yaml:4: not valid YAML/JSON")


def test_a_document_that_is_not_a_mapping_is_refused_at_line_one() -> None:
    (problem,) = check_document("- just\n- a list\n").problems
    assert problem.line == 1


def test_service_violations_are_located_through_the_local_file() -> None:
    violations = [
        FieldViolation("document.plans[0].versions[0].colour", "line 11: unknown field"),
        FieldViolation("document", "line 3: not valid YAML/JSON: oops"),
        FieldViolation("source_name", "must be at most 255 characters"),
    ]
    located = locate(violations, BROKEN)
    assert [p.render("c.yaml") for p in located] == [
        "c.yaml:11: plans[0].versions[0].colour: unknown field",
        "c.yaml:3: not valid YAML/JSON: oops",
        "source_name: must be at most 255 characters",
    ]


def test_without_a_readable_local_file_the_service_line_is_kept() -> None:
    located = locate(
        [FieldViolation("document.plans[9].code", "line 42: is required")], "{not: [yaml"
    )
    assert located[0].render("c.yaml") == "c.yaml:42: plans[9].code: is required"


def test_a_prefix_csv_with_problems_names_its_lines(tmp_path: Path) -> None:
    prefixes = tmp_path / "prefixes.csv"
    prefixes.write_text("prefix,destination\n31,NL\n3x1,Broken\n316\n", encoding="utf-8")
    with pytest.raises(DestinationsError) as failure:
        load_destinations(prefixes, has_header=True)
    assert {p.line for p in failure.value.problems} == {3, 4}


# -- the command ---------------------------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(catalog_app, ["check", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_check_needs_no_running_suite(tmp_path: Path) -> None:
    code, output = run(str(SAMPLE), "--data-dir", str(tmp_path))
    assert code == 0, output
    assert "is valid" in output
    assert "conference-pro" in output


def test_check_of_a_broken_file_exits_1_with_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    code, output = run(str(broken))
    assert code == 1
    assert f"{broken}:11: plans[0].versions[0].colour: unknown field" in output
    assert f"{broken}:16: plans[0].versions[0].rates[0].first_increment: must be" in output


VALID_WITHOUT_DESTINATIONS = """\
products: [{code: voice, unit: second}]
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {id: nl, service: voice, destination: NL, first_increment: 60, next_increment: 60,
             prices: {"*": {first: "0.10", next: "0.10"}}}
"""


def test_rates_may_name_destinations_of_a_prefix_csv(tmp_path: Path) -> None:
    document = tmp_path / "catalog.yaml"
    document.write_text(VALID_WITHOUT_DESTINATIONS, encoding="utf-8")
    code, output = run(str(document))
    assert code == 1
    assert f"{document}:9: plans[0].versions[0].rates[0].destination:" in output
    prefixes = tmp_path / "prefixes.csv"
    prefixes.write_text("31,NL\n3120,NL\n", encoding="utf-8")
    code, output = run(str(document), "--destinations", str(prefixes))
    assert code == 0, output
    assert "2 destination prefixes (with prefixes.csv)" in output


def test_unreadable_files_are_usage_errors(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.yaml"))[0] == 2
    assert run(str(tmp_path))[0] == 2  # a directory
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("plans: []\nname: caf\xe9\n".encode("latin-1"))
    assert run(str(latin1))[0] == 1  # readable, but not a UTF-8 document


PER_RATE_UNIT = """\
products:
  - {code: voice, unit: second}
destinations:
  - {name: UK, prefixes: ["44"]}
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: uk
            service: voice
            destination: UK
            first_increment: 1
            next_increment: 1
            unit_prices: {"*": "0.02"}
            connection_fee: {"*": "-0.05"}
"""


def test_prices_per_rate_unit_are_checked_with_line_and_field() -> None:
    # Issue 9 item 6: unit_prices need a rate_unit; a negative fee per band is named.
    result = check_document(PER_RATE_UNIT)
    assert problems_by_path(result.problems) == {
        "plans[0].versions[0].rates[0].rate_unit": line_of(PER_RATE_UNIT, "- id: uk"),
        "plans[0].versions[0].rates[0].connection_fee.*": line_of(PER_RATE_UNIT, "connection_fee"),
    }
    fixed = PER_RATE_UNIT.replace("-0.05", "0.05").replace(
        "            unit_prices:", "            rate_unit: 60\n            unit_prices:"
    )
    assert check_document(fixed).valid
