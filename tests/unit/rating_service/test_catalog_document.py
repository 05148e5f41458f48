"""Catalog documents keep exact prices and point problems at their line."""

from __future__ import annotations

import pytest

from services.common.errors import FieldViolation
from services.rating.service_layer.catalog_document import (
    DocumentSyntaxError,
    load_document,
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
