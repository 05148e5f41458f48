"""One plan-code rule for rating's catalog and accounts' subscriptions (issue 9 item 10).

``reckon catalog check`` used to accept codes accounts then refused to subscribe
to ("Conference Pro!", "HID-CONF"). The same codes now pass or fail in both.
"""

from __future__ import annotations

import pytest

from services.accounts.entrypoints.validation import plan_code
from services.common.errors import Violations
from services.rating.domain.document import check_catalog
from suite.catalog_check import check_document

from .support import catalog_document, flat_voice_rate

CODES = [
    ("conference-pro", True),
    ("conf.basic_2", True),
    ("9", True),
    ("x" * 64, True),
    ("Conference Pro!", False),
    ("HID-CONF", False),
    ("-leading-dash", False),
    ("x" * 65, False),
    ("conférence", False),
]


def _catalog_accepts(code: str) -> bool:
    document = catalog_document([flat_voice_rate("0.10")])
    document["plans"][0]["code"] = code
    problems = {v.field: v.description for v in check_catalog(document)}
    return "plans[0].code" not in problems


def _accounts_accepts(code: str) -> bool:
    violations = Violations()
    plan_code(violations, code, "plan_code")
    return not violations.items


@pytest.mark.parametrize(("code", "valid"), CODES)
def test_catalog_and_accounts_agree_on_every_plan_code(code: str, valid: bool) -> None:
    assert _accounts_accepts(code) is valid
    assert _catalog_accepts(code) is valid


def test_the_offline_check_names_the_line_of_a_bad_plan_code() -> None:
    text = """\
products:
  - {code: voice, unit: second}
plans:
  - code: Conference Pro!
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
"""
    result = check_document(text)
    [problem] = [p for p in result.problems if p.path == "plans[0].code"]
    assert problem.line == 4
    assert "lower-case" in problem.description
