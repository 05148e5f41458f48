"""Catalog documents keep exact prices and point problems at their line."""

from __future__ import annotations

import pytest

from services.common.errors import FieldViolation
from services.rating.service_layer.catalog_document import (
    DocumentSyntaxError,
    load_document,
    read_catalog,
    with_lines,
)

DOCUMENT = """\
# comment
plans:
  - code: basic
    versions:
      - version: 1
        rates:
          - {id: r1, first: 0.10}
"""


def test_floats_stay_exact_text() -> None:
    loaded = load_document(DOCUMENT)
    rate = loaded.content["plans"][0]["versions"][0]["rates"][0]
    assert rate["first"] == "0.10"


def test_paths_map_to_lines_and_missing_ones_to_their_parent() -> None:
    loaded = load_document(DOCUMENT)
    assert loaded.line_of("plans[0].code") == 3
    assert loaded.line_of("plans[0].versions[0].rates[0].first") == 7
    assert loaded.line_of("plans[0].versions[0].valid_from") == 5  # absent: the version
    located = with_lines([FieldViolation("plans[0].currency", "is required")], loaded)
    assert located == [FieldViolation("document.plans[0].currency", "line 3: is required")]


def test_json_documents_have_lines_too() -> None:
    loaded = load_document('{\n  "plans": [\n    {"code": "x", "price": 1.50}\n  ]\n}\n')
    assert loaded.content["plans"][0]["price"] == "1.50"
    assert loaded.line_of("plans[0].price") == 3


def test_syntax_errors_carry_the_line() -> None:
    with pytest.raises(DocumentSyntaxError) as failure:
        load_document("plans:\n  - code: [x\n")
    assert failure.value.line == 3


def test_an_alias_bomb_is_refused_at_once_instead_of_hanging() -> None:
    # Nine levels of nine aliases: 387 million values once expanded. Indexing the
    # lines of every path of it used to run for ever (ApplyCatalog and the check).
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    reading = read_catalog("\n".join(lines) + "\n")
    assert reading.catalog is None
    [problem] = reading.problems
    assert "expands to more than" in problem.description


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000])
def test_a_document_nested_thousands_deep_is_a_syntax_problem(text: str) -> None:
    reading = read_catalog(text)
    assert [(p.path, p.line, p.description) for p in reading.problems] == [
        ("", None, "not valid YAML/JSON: nested too deeply")
    ]


def test_aliases_within_reason_still_work_and_keep_their_lines() -> None:
    loaded = load_document("x: &price {first: '0.10'}\ny: *price\n")
    assert loaded.content["y"] == {"first": "0.10"}
    assert (loaded.line_of("y.first"), loaded.line_of("x.first")) == (2, 1)


def test_tabs_in_json_strings_are_kept_and_between_tokens_become_spaces() -> None:
    loaded = load_document('{\n\t"name":\t"a\\tb"\n}\n', json_document=True)
    assert loaded.content == {"name": "a\tb"}
    assert loaded.line_of("name") == 2
