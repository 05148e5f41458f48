"""Dunning policies read from YAML: the sample is valid, bad ones are refused by line and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.dunning.domain.policy import ReactionKind
from services.dunning.service_layer.policy_document import problems_of, read_policy

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "dunning-policy.yaml"


def test_the_sample_is_the_conventions_default_policy() -> None:
    policy = read_policy(SAMPLE.read_text())
    assert policy.is_default
    assert [lv.conditions.days_past_due for lv in policy.levels] == [1, 7, 14, 30]
    assert [sorted(r.kind.value for r in lv.reactions) for lv in policy.levels] == [
        ["EMAIL"],
        ["LATE_FEE", "SMS"],
        ["EMAIL", "SUSPEND"],
        ["BAR", "COLLECTIONS", "EMAIL"],
    ]


def _problems(text: str) -> dict[str, str]:
    return {v.field: v.description for v in problems_of(text)}


BASE = """\
code: p
levels:
  - when: {days_past_due: 1}
    reactions: [{kind: email, template: dunning_reminder}]
"""


def test_negative_days_are_refused_with_line_and_field() -> None:
    problems = _problems(BASE.replace("days_past_due: 1", "days_past_due: -3"))
    assert problems["document.levels[0].when.days_past_due"].startswith("line 3: ")
    assert "negative" in problems["document.levels[0].when.days_past_due"]


def test_negative_rates_unknown_templates_and_currencies_are_refused() -> None:
    text = """\
code: p
levels:
  - when: {days_past_due: 1, amount_overdue: {XXY: "5"}}
    reactions:
      - {kind: email, template: no_such_template}
      - {kind: penalty_interest, annual_rate_percent: "-8"}
"""
    problems = _problems(text)
    assert problems["document.levels[0].when.amount_overdue.XXY"].startswith("line 3: unknown")
    assert problems["document.levels[0].reactions[0].template"].startswith("line 5: unknown")
    assert problems["document.levels[0].reactions[1].annual_rate_percent"].startswith("line 6:")


def test_overlapping_levels_are_refused() -> None:
    text = BASE + "  - when: {days_past_due: 1}\n    reactions: [suspend]\n"
    problems = _problems(text)
    assert "overlaps level 1" in problems["document.levels[1].when"]
    assert problems["document.levels[1].when"].startswith("line 5: ")


def test_a_level_a_higher_one_always_shadows_is_unreachable() -> None:
    text = """\
code: p
levels:
  - when: {days_past_due: 7, amount_overdue: {EUR: "100"}}
    reactions: [suspend]
  - when: {days_past_due: 7}
    reactions: [bar]
"""
    problems = _problems(text)
    assert "unreachable" in problems["document.levels[0].when"]


def test_levels_must_escalate_in_days() -> None:
    text = BASE + "  - when: {days_past_due: 0, unpaid_invoices: 3}\n    reactions: [bar]\n"
    assert "levels escalate" in _problems(text)["document.levels[1].when.days_past_due"]


def test_syntax_errors_name_the_line() -> None:
    problems = _problems("code: p\nlevels: [\n")
    assert problems["document"].startswith("line 3: not valid YAML")


def test_late_fee_percentage_with_a_minimum() -> None:
    text = """\
code: p
levels:
  - when: {days_past_due: 7}
    reactions: [{kind: late_fee, percent: "1.5", minimum: {EUR: "5.00"}}]
"""
    (reaction,) = read_policy(text).levels[0].reactions
    assert reaction.kind is ReactionKind.LATE_FEE
    assert reaction.late_fee is not None
    assert reaction.late_fee.fee_for(Money.of("100.00", "EUR")) == Money.of("5.00", "EUR")
    assert reaction.late_fee.fee_for(Money.of("1000.10", "EUR")) == Money.of("15.00", "EUR")
    assert reaction.late_fee.percent == Decimal("1.5")


def test_unknown_fields_and_a_missing_code_are_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        read_policy("levelz: []\n")
    fields = {v.field for v in caught.value.violations}
    assert {"document.levelz", "document.code", "document.levels"} <= fields


def test_an_over_long_name_is_refused() -> None:
    problems = _problems("name: " + "x" * 201 + "\n" + BASE)
    assert problems["document.name"].startswith("line 1: ")
