"""Dunning policies (DUN-1): levels, the conditions that reach them and their reactions.

A policy is versioned data an operator writes (YAML, see ``samples/dunning-policy.yaml``)
and applies; each apply of a code makes a new version. An account follows the newest
version of the policy assigned to its customer group, else to its reseller, else the
default policy.

Levels are ordered escalations. An account is at the highest level whose conditions
all hold (AND, as Kill Bill Overdue combines them): days past its oldest overdue due
date, amount overdue in its currency, number of unpaid overdue invoices and the last
payment failure reason. ``parse_policy`` refuses a policy whose level can never be the
one reached (a later level holds whenever it does), two levels with the same
conditions, negative days or rates, unknown templates and unknown currencies, naming
the field (``levels[2].reactions[0].late_fee.percent``) so the loader can add the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any, Final

from services.common.errors import FieldViolation, InvalidArgument
from services.common.money import Money, Rounding, is_known_currency

# Templates notifications holds for dunning messages (services/dunning/README.md lists them).
KNOWN_TEMPLATES: Final = frozenset(
    {
        "dunning_reminder",
        "dunning_reminder_sms",
        "dunning_late_fee",
        "dunning_suspended",
        "dunning_suspended_sms",
        "dunning_barred",
        "dunning_collections",
        "dunning_final_notice",
    }
)
MAX_LEVELS: Final = 20
MAX_DAYS: Final = 3650
CODE_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class ReactionKind(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    LATE_FEE = "LATE_FEE"
    PENALTY_INTEREST = "PENALTY_INTEREST"
    SUSPEND = "SUSPEND"
    BAR = "BAR"
    COLLECTIONS = "COLLECTIONS"


MESSAGE_KINDS: Final = frozenset({ReactionKind.EMAIL, ReactionKind.SMS})


@dataclass(frozen=True)
class LateFee:
    """Either a fixed fee per currency or a percentage of the overdue amount with a minimum."""

    fixed: Mapping[str, Decimal] = field(default_factory=dict)
    percent: Decimal | None = None
    minimum: Mapping[str, Decimal] = field(default_factory=dict)

    @cached_property
    def _fixed_fees(self) -> dict[str, Money]:
        """The fixed fee per currency, rounded half-up once: made once per policy, not per
        overdue invoice of a daily run."""
        return {
            currency: Money.of(amount, currency).rounded(rounding=Rounding.HALF_UP)
            for currency, amount in self.fixed.items()
            if amount
        }

    def fee_for(self, overdue: Money) -> Money | None:
        """The fee on one overdue invoice, rounded half-up once; None if none is defined."""
        currency = overdue.currency
        if self.percent is None:
            return self._fixed_fees.get(currency)
        fee = overdue.times(self.percent / Decimal(100), rounding=Rounding.HALF_UP)
        minimum = self.minimum.get(currency)
        if minimum is not None and fee.amount < minimum:
            fee = Money.of(minimum, currency).rounded(rounding=Rounding.HALF_UP)
        return fee


@dataclass(frozen=True)
class Reaction:
    kind: ReactionKind
    template: str = ""  # EMAIL and SMS
    late_fee: LateFee | None = None  # LATE_FEE
    annual_rate_percent: Decimal | None = None  # PENALTY_INTEREST


@dataclass(frozen=True)
class Conditions:
    days_past_due: int
    amount_overdue: Mapping[str, Decimal] = field(default_factory=dict)
    unpaid_invoices: int = 0
    # Any of these decline codes as the last failure; empty: not a condition.
    failure_reasons: frozenset[str] = frozenset()

    def implied_by(self, other: Conditions) -> bool:
        """True when every account meeting ``other`` also meets these conditions."""
        if self.days_past_due > other.days_past_due:
            return False
        if self.unpaid_invoices > other.unpaid_invoices:
            return False
        for currency, minimum in self.amount_overdue.items():
            if currency not in other.amount_overdue or other.amount_overdue[currency] < minimum:
                return False
        return not (
            self.failure_reasons
            and not (other.failure_reasons and other.failure_reasons <= self.failure_reasons)
        )


@dataclass(frozen=True)
class Level:
    number: int  # 1-based position in the policy
    name: str
    conditions: Conditions
    reactions: tuple[Reaction, ...]
    # Messages of this level go out again every N days while the account stays; 0: once.
    repeat_every_days: int = 0

    def has(self, kind: ReactionKind) -> bool:
        return any(reaction.kind is kind for reaction in self.reactions)


@dataclass(frozen=True)
class Policy:
    code: str
    name: str
    version: int
    levels: tuple[Level, ...]
    groups: frozenset[str] = frozenset()
    resellers: frozenset[str] = frozenset()
    is_default: bool = False

    def level(self, number: int) -> Level | None:
        return self.levels[number - 1] if 1 <= number <= len(self.levels) else None


def parse_policy(document: Any, *, version: int = 1) -> Policy:
    """A policy from its document (plain data); InvalidArgument names every bad field."""
    problems: list[FieldViolation] = []

    def bad(path: str, why: str) -> None:
        problems.append(FieldViolation(path, why))

    if not isinstance(document, Mapping):
        raise InvalidArgument(FieldViolation("", "a policy is a mapping with code and levels"))
    known = {"code", "name", "applies_to", "levels"}
    for key in document:
        if key not in known:
            bad(str(key), f"unknown field (expected one of {', '.join(sorted(known))})")
    code = document.get("code")
    if not isinstance(code, str) or not code or not set(code) <= CODE_CHARS or len(code) > 64:
        bad("code", "required: 1 to 64 of a-z, 0-9, - and _")
        code = ""
    name = document.get("name", code)
    if not isinstance(name, str) or len(name) > 200:
        bad("name", "must be text of at most 200 characters")
        name = ""
    groups, resellers, is_default = _applies_to(document.get("applies_to"), bad)
    raw_levels = document.get("levels")
    levels: list[Level] = []
    if not isinstance(raw_levels, list) or not raw_levels:
        bad("levels", "required: a list of at least one level")
    elif len(raw_levels) > MAX_LEVELS:
        bad("levels", f"at most {MAX_LEVELS} levels")
    else:
        for index, raw in enumerate(raw_levels):
            level = _level(raw, index, bad)
            if level is not None:
                levels.append(level)
        if len(levels) == len(raw_levels):
            _check_escalation(levels, bad)
    if problems:
        raise InvalidArgument(problems, "the dunning policy is not valid")
    return Policy(
        code=code,
        name=name,
        version=version,
        levels=tuple(levels),
        groups=groups,
        resellers=resellers,
        is_default=is_default,
    )


def _applies_to(raw: Any, bad: Any) -> tuple[frozenset[str], frozenset[str], bool]:
    if raw is None:
        return frozenset(), frozenset(), False
    if not isinstance(raw, Mapping):
        bad("applies_to", "a mapping with groups, resellers and/or default")
        return frozenset(), frozenset(), False
    found: dict[str, frozenset[str]] = {}
    for key in ("groups", "resellers"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            bad(f"applies_to.{key}", "a list of non-empty ids")
            value = []
        found[key] = frozenset(value)
    default = raw.get("default", False)
    if not isinstance(default, bool):
        bad("applies_to.default", "true or false")
        default = False
    for key in raw:
        if key not in {"groups", "resellers", "default"}:
            bad(f"applies_to.{key}", "unknown field (expected groups, resellers, default)")
    return found["groups"], found["resellers"], default


def _decimal(value: Any, path: str, bad: Any, *, positive: bool = False) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        bad(path, 'must be a number written exactly (e.g. 10 or "2.50")')
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        bad(path, f"not a number: {value!r}")
        return None
    if not number.is_finite():
        bad(path, "must be finite")
        return None
    if number < 0 or (positive and number == 0):
        bad(path, "must be positive" if positive else "must not be negative")
        return None
    return number


def _amounts(raw: Any, path: str, bad: Any, *, positive: bool = False) -> dict[str, Decimal]:
    if not isinstance(raw, Mapping) or not raw:
        bad(path, 'a mapping of ISO 4217 currency to amount (e.g. {EUR: "10.00"})')
        return {}
    amounts: dict[str, Decimal] = {}
    for currency, value in raw.items():
        if not isinstance(currency, str) or not is_known_currency(currency):
            bad(f"{path}.{currency}", f"unknown currency {currency!r}")
            continue
        number = _decimal(value, f"{path}.{currency}", bad, positive=positive)
        if number is not None:
            amounts[currency] = number
    return amounts


def _days(raw: Any, path: str, bad: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int):
        bad(path, "must be a whole number of days")
        return None
    if raw < 0:
        bad(path, "must not be negative")
        return None
    if raw > MAX_DAYS:
        bad(path, f"at most {MAX_DAYS} days")
        return None
    return raw


def _level(raw: Any, index: int, bad: Any) -> Level | None:
    path = f"levels[{index}]"
    if not isinstance(raw, Mapping):
        bad(path, "a level is a mapping with when and reactions")
        return None
    for key in raw:
        if key not in {"name", "when", "reactions", "repeat_every_days"}:
            bad(
                f"{path}.{key}", "unknown field (expected name, when, reactions, repeat_every_days)"
            )
    name = raw.get("name", f"level {index + 1}")
    if not isinstance(name, str) or not name:
        bad(f"{path}.name", "must be non-empty text")
    when = raw.get("when")
    conditions = _conditions(when, f"{path}.when", bad)
    repeat = _days(raw.get("repeat_every_days", 0), f"{path}.repeat_every_days", bad)
    reactions_raw = raw.get("reactions")
    reactions: list[Reaction] = []
    if not isinstance(reactions_raw, list) or not reactions_raw:
        bad(f"{path}.reactions", "required: a list of at least one reaction")
    else:
        seen: set[ReactionKind] = set()
        for position, item in enumerate(reactions_raw):
            reaction = _reaction(item, f"{path}.reactions[{position}]", bad)
            if reaction is None:
                continue
            if reaction.kind in seen and reaction.kind not in MESSAGE_KINDS:
                bad(f"{path}.reactions[{position}]", f"{reaction.kind.value} appears twice")
            seen.add(reaction.kind)
            reactions.append(reaction)
        if len(reactions) != len(reactions_raw):
            return None
    if conditions is None or repeat is None or not isinstance(name, str):
        return None
    return Level(index + 1, name, conditions, tuple(reactions), repeat)


def _conditions(raw: Any, path: str, bad: Any) -> Conditions | None:
    if not isinstance(raw, Mapping):
        bad(path, "required: a mapping with days_past_due (and optional conditions)")
        return None
    known = {"days_past_due", "amount_overdue", "unpaid_invoices", "last_failure_reason"}
    for key in raw:
        if key not in known:
            bad(f"{path}.{key}", f"unknown condition (expected {', '.join(sorted(known))})")
    if "days_past_due" not in raw:
        bad(f"{path}.days_past_due", "required")
        return None
    days = _days(raw["days_past_due"], f"{path}.days_past_due", bad)
    amounts: dict[str, Decimal] = {}
    if "amount_overdue" in raw:
        amounts = _amounts(raw["amount_overdue"], f"{path}.amount_overdue", bad)
    unpaid = 0
    if "unpaid_invoices" in raw:
        value = raw["unpaid_invoices"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            bad(f"{path}.unpaid_invoices", "must be a whole number, not negative")
        else:
            unpaid = value
    reasons: frozenset[str] = frozenset()
    if "last_failure_reason" in raw:
        value = raw["last_failure_reason"]
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(v, str) and v for v in items)
        ):
            bad(f"{path}.last_failure_reason", "a decline code or a list of them")
        else:
            reasons = frozenset(items)
    if days is None:
        return None
    return Conditions(days, amounts, unpaid, reasons)


def _reaction(raw: Any, path: str, bad: Any) -> Reaction | None:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        bad(path, "a reaction is a kind (email, sms, late_fee, ...) or a mapping with kind")
        return None
    kind_text = raw.get("kind")
    try:
        kind = ReactionKind(str(kind_text).upper())
    except ValueError:
        names = ", ".join(k.value.lower() for k in ReactionKind)
        bad(f"{path}.kind", f"unknown reaction {kind_text!r} (expected one of {names})")
        return None
    if kind in MESSAGE_KINDS:
        template = raw.get("template")
        if not isinstance(template, str) or template not in KNOWN_TEMPLATES:
            bad(
                f"{path}.template",
                f"unknown template {template!r} (known: {', '.join(sorted(KNOWN_TEMPLATES))})",
            )
            return None
        return Reaction(kind, template=template)
    if kind is ReactionKind.LATE_FEE:
        if ("fixed" in raw) == ("percent" in raw):
            bad(f"{path}", "a late fee is either fixed (per currency) or a percent")
            return None
        if "fixed" in raw:
            fixed = _amounts(raw["fixed"], f"{path}.fixed", bad, positive=True)
            return Reaction(kind, late_fee=LateFee(fixed=fixed)) if fixed else None
        percent = _decimal(raw["percent"], f"{path}.percent", bad, positive=True)
        minimum: dict[str, Decimal] = {}
        if "minimum" in raw:
            minimum = _amounts(raw["minimum"], f"{path}.minimum", bad)
        if percent is None:
            return None
        return Reaction(kind, late_fee=LateFee(percent=percent, minimum=minimum))
    if kind is ReactionKind.PENALTY_INTEREST:
        rate = _decimal(raw.get("annual_rate_percent"), f"{path}.annual_rate_percent", bad)
        if rate is None:
            return None
        return Reaction(kind, annual_rate_percent=rate)
    return Reaction(kind)


def _check_escalation(levels: list[Level], bad: Any) -> None:
    for later in levels[1:]:
        earlier = levels[later.number - 2]
        if later.conditions.days_past_due < earlier.conditions.days_past_due:
            bad(
                f"levels[{later.number - 1}].when.days_past_due",
                f"{later.conditions.days_past_due} is less than level {earlier.number}'s "
                f"{earlier.conditions.days_past_due}: levels escalate",
            )
            return
    for level in levels:
        for later in levels[level.number :]:
            if later.conditions == level.conditions:
                bad(
                    f"levels[{later.number - 1}].when",
                    f"overlaps level {level.number}: the same conditions",
                )
                return
            if later.conditions.implied_by(level.conditions):
                bad(
                    f"levels[{level.number - 1}].when",
                    f"unreachable: every account meeting it also meets level {later.number} "
                    f"({later.name}), which is higher",
                )
                return
