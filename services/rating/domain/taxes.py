"""Taxes per jurisdiction: several per charge, inclusive or exclusive, each shown.

A ``TaxRegion`` (a jurisdiction: "NL", "US-NY-NYC") holds ``TaxRule``s, each a
percentage that applies to some or all services during a validity window (VAT
rates change on a date). A charge is taxed by every rule of the account's region
in force at the event time for the event's service.

How a charged amount ``P`` becomes net, taxes and gross:

* Exclusive taxes are added: each tax is ``net x rate``, rounded on its own.
* Inclusive taxes are already inside ``P``: with ``R`` the sum of the inclusive
  rates, each inclusive tax is ``P x rate / (1 + R)``, rounded on its own, and
  the net is ``P`` minus those rounded taxes, so the cent lost or gained by
  rounding lands in the net, never in a tax line.
* Taxes never compound (no tax on tax); every tax is computed on the net.
* ``net + sum(taxes) == gross`` exactly, at the charge's precision, with the
  region's rounding method (half-up by default, as most tax authorities ask).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from math import lcm
from typing import Final

from services.common.money import Rounding

from .amounts import from_nanos, percent_ratio, round_div, step
from .timebands import BEGINNING, epoch_window

# VAT categories without VAT (EN 16931, UNCL 5305) a tax region may name.
ZERO_VAT_CATEGORIES: Final = frozenset({"Z", "E", "AE", "K", "G", "O"})


@dataclass(frozen=True, slots=True)
class TaxRule:
    """One tax: ``percent`` of the net, for ``services`` (empty: all) while valid."""

    code: str
    name: str
    percent: Decimal
    inclusive: bool = False
    services: frozenset[str] = frozenset()
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    _ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    _window: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ratio", percent_ratio(self.percent))
        object.__setattr__(self, "_window", epoch_window(self.valid_from, self.valid_to))

    def applies(self, service: str, instant: int) -> bool:
        """Whether the rule taxes ``service`` at epoch second ``instant``."""
        start, end = self._window
        return start <= instant < end and (not self.services or service in self.services)

    @property
    def ratio(self) -> tuple[int, int]:
        """The rate as an exact fraction of one."""
        return self._ratio

    @property
    def window(self) -> tuple[int, int]:
        """[valid_from, valid_to) in epoch seconds."""
        return self._window


@dataclass(frozen=True, slots=True)
class TaxRegion:
    """A jurisdiction with its taxes; a region without rules taxes nothing (exempt)."""

    code: str
    taxes: tuple[TaxRule, ...] = ()
    rounding: Rounding = Rounding.HALF_UP
    name: str = ""
    # The EN 16931 VAT category (UNCL 5305) of what this region charges no VAT on:
    # Z zero rated (the default), E exempt, AE reverse charge, K intra-community
    # supply, G export outside the EU, O not subject to VAT. A service taxed at a
    # rate above 0 is always S (standard).
    vat_category: str = ""

    def rules_for(self, service: str, instant: int) -> tuple[TaxRule, ...]:
        return tuple(rule for rule in self.taxes if rule.applies(service, instant))


@dataclass(frozen=True, slots=True)
class TaxLine:
    """One tax of a rated charge, as an invoice shows it."""

    code: str
    name: str
    percent: Decimal
    inclusive: bool
    amount: Decimal


_HALF_UP: Final = Rounding.HALF_UP  # a plain reference: enum attribute lookup is slow

# Tax lines repeat (one tax, a few hundred distinct amounts): each TaxSet keeps the lines
# it made, immutable and shared between charges, up to this many per rule and precision.
_LINES_LIMIT: Final = 4096


class TaxSet:
    """The rules that tax one service at one time, prepared to be applied fast."""

    __slots__ = ("_lines", "_plans", "_settled", "rounding", "rules")

    def __init__(self, rules: tuple[TaxRule, ...], rounding: Rounding) -> None:
        self.rules = rules
        self.rounding = rounding
        self._lines: dict[int, list[dict[int, TaxLine]]] = {}
        # (amount, places) -> what ``settle`` returned: a tariff charges few distinct
        # amounts (tens of thousands in a million CDRs), so most records hit.
        self._settled: dict[tuple[int, int], _Settled] = {}
        # Per precision: (index, numerator, denominator x step) of inclusive, then exclusive
        # rules, so applying a tax is one multiplication and one rounded division.
        self._plans: dict[int, tuple[_Steps, _Steps]] = {}

    def apply(self, priced: int, places: int) -> tuple[int, list[int], int]:
        """(net, tax per rule, gross) in nanos for a charged amount ``priced``."""
        if not self.rules:
            return priced, [], priced
        plan = self._plans.get(places)
        if plan is None:
            plan = self._plans[places] = self._plan(places)
        inclusive, exclusive = plan
        rounding = self.rounding
        amounts = [0] * len(self.rules)
        net = priced
        for index, numerator, denominator, unit in inclusive:
            amount = round_div(priced * numerator, denominator, rounding) * unit
            amounts[index] = amount
            net -= amount
        gross = priced
        # Half-up on a positive amount is the common case: decided inline, without a call.
        half_up = rounding is _HALF_UP and net > 0
        for index, numerator, denominator, unit in exclusive:
            scaled = net * numerator
            quotient, remainder = divmod(scaled, denominator)
            if remainder:
                if half_up:
                    quotient += 2 * remainder >= denominator
                else:
                    quotient = round_div(scaled, denominator, rounding)
            amount = quotient * unit
            amounts[index] = amount
            gross += amount
        return net, amounts, gross

    def settle(self, priced: int, places: int) -> _Settled:
        """``apply`` and ``lines`` together, memoised: (net, tax per rule, gross, lines).

        The lists are shared between callers asking for the same amount: read-only.
        """
        key = (priced, places)
        settled = self._settled.get(key)
        if settled is None:
            net, amounts, gross = self.apply(priced, places)
            settled = (net, amounts, gross, self.lines(amounts, places) if amounts else [])
            if len(self._settled) < _SETTLED_LIMIT:
                self._settled[key] = settled
        return settled

    def lines(self, amounts: list[int], places: int) -> list[TaxLine]:
        """The tax lines for ``amounts`` (nanos at ``places``, as ``apply`` returned them)."""
        caches = self._lines.get(places)
        if caches is None:
            caches = self._lines[places] = [{} for _ in self.rules]
        lines: list[TaxLine] = []
        for index, amount in enumerate(amounts):
            cache = caches[index]
            line = cache.get(amount)
            if line is None:
                rule = self.rules[index]
                line = TaxLine(
                    rule.code, rule.name, rule.percent, rule.inclusive, from_nanos(amount, places)
                )
                if len(cache) < _LINES_LIMIT:
                    cache[amount] = line
            lines.append(line)
        return lines

    def _plan(self, places: int) -> tuple[_Steps, _Steps]:
        unit = step(places)
        inclusive: _Steps = ()
        if any(rule.inclusive for rule in self.rules):
            inclusive = tuple(
                (index, numerator, denominator * unit, unit)
                for index, (numerator, denominator) in _inclusive_shares(self.rules)
            )
        exclusive = tuple(
            (index, rule.ratio[0], rule.ratio[1] * unit, unit)
            for index, rule in enumerate(self.rules)
            if not rule.inclusive
        )
        return inclusive, exclusive


# Distinct charged amounts remembered per TaxSet: the common ones come early in a file,
# and a small bound keeps peak memory flat in the file size (about 2 MB).
_SETTLED_LIMIT: Final = 8192
# (net, tax per rule, gross, tax lines), nanos at one precision.
_Settled = tuple[int, list[int], int, list[TaxLine]]
# (rule index, numerator, denominator x step, step) of each tax at one precision.
_Steps = tuple[tuple[int, int, int, int], ...]


class TaxSchedule:
    """The ``TaxSet``s of one region for one service over time, found by bisection."""

    __slots__ = ("_sets", "_starts", "constant")

    def __init__(self, region: TaxRegion, service: str) -> None:
        rules = [rule for rule in region.taxes if not rule.services or service in rule.services]
        starts = sorted({BEGINNING} | {edge for rule in rules for edge in rule.window})
        self._starts = starts
        self._sets = [
            TaxSet(tuple(rule for rule in rules if rule.applies(service, start)), region.rounding)
            for start in starts
        ]
        # Most regions' taxes never change within the catalog: no bisection needed then.
        self.constant = self._sets[0] if len(self._sets) == 1 else None

    def at(self, instant: int) -> TaxSet:
        return self._sets[bisect_right(self._starts, instant) - 1]


def apply_taxes(
    rules: Sequence[TaxRule], priced: int, places: int, rounding: Rounding
) -> tuple[int, list[int], int]:
    """(net, tax per rule in ``rules`` order, gross) in nanos for a charged amount ``priced``."""
    return TaxSet(tuple(rules), rounding).apply(priced, places)


@lru_cache(maxsize=256)
def _inclusive_shares(rules: tuple[TaxRule, ...]) -> tuple[tuple[int, tuple[int, int]], ...]:
    """For each inclusive rule: its share of a tax-inclusive amount, rate / (1 + R)."""
    inclusive = [(index, rule.ratio) for index, rule in enumerate(rules) if rule.inclusive]
    common = lcm(*(denominator for _, (_, denominator) in inclusive))
    total = sum(numerator * (common // denominator) for _, (numerator, denominator) in inclusive)
    return tuple(
        (index, (numerator * (common // denominator), common + total))
        for index, (numerator, denominator) in inclusive
    )


__all__ = ["TaxLine", "TaxRegion", "TaxRule", "TaxSchedule", "TaxSet", "apply_taxes"]
