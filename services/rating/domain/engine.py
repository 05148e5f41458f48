"""The tariff engine: rate one usage event, quote a price, find what an amount buys.

``RatingEngine`` compiles a ``Catalog`` once (prefix maps per plan version and
service, band schedules, prices in nanos) and then rates events with integer
arithmetic:

1. the plan version in force at the event time, and the customer's (else the
   group's) price package version in force, if any;
2. the rate: the longest prefix of the normalised destination among the
   destinations the package or the plan prices for the service (a longer prefix
   wins; on equal length the package wins); a rate without destination prices
   any number and events without one;
3. the usage charge: a time tariff splits the call by time band in the
   account's time zone (see ``tariffs`` for the increment rule), other models
   price the quantity (see ``charge_models``); included allowance is drawn first;
4. rounding to the rate's precision with its method, then the minimum and
   maximum cost (only when something is charged);
5. discounts, in order, each on what the previous left;
6. taxes of the account's tax region (see ``taxes``): net + taxes = gross.

The result, ``RatedCharge``, carries every step so an invoice line can be
explained: ``connection_fee + sum(segment amounts) + sum(unit line amounts) +
rounding_adjustment + limit_adjustment == usage_amount``, ``usage_amount -
discount`` is the amount taxed, and ``net + tax == gross``.

Result types are mutable slotted dataclasses rather than frozen ones on
purpose: a frozen dataclass sets every field through ``object.__setattr__``,
which costs several microseconds per object on a path that must rate 50,000
events a second. Treat them as read-only. (Tax lines are frozen and shared
between charges, because they repeat.)

The engine compiles lazily and caches what repeats (band timelines per zone,
tax schedules, Decimal amounts, tax lines), each cache bounded. Filling a cache
is idempotent, so one engine can serve several threads; a new catalog means a
new engine.

``RatingEngine`` (here: compiling the catalog and the public API) is composed of
one part per step: ``engine_selection`` (tariff selection: plan and package
version, rate, taxes, discounts), ``engine_pricing`` (pricing arithmetic,
rounding, cost limits, discounts and taxes in nanos) and ``engine_results`` (the
explained ``RatedCharge``); ``engine_events`` holds the input and result types
and ``engine_compiled`` the compiled catalog.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from services.common.money import MAX_SCALE, Rounding, currency_exponent

from .amounts import decimal_places, round_nanos, to_nanos
from .catalog import Catalog, UsageRate, validate_catalog
from .charge_models import Percentage, RecurringFee, UnitLine
from .discounts import ReferralReward
from .engine_compiled import _PackageVersion, _PlanVersion, _Rate, _Resolved, _Versions
from .engine_events import (
    MAX_CALL_SECONDS,
    MAX_QUANTITY,
    AmountBasis,
    BandSegment,
    CostLimit,
    DiscountLine,
    RatedCharge,
    UnitsForAmount,
    UsageEvent,
)
from .engine_pricing import PricingArithmetic
from .engine_results import ChargeExplanation, _decimal
from .engine_selection import TariffSelection
from .errors import InvalidCatalog, InvalidEvent, UnknownFee, UnknownReward
from .taxes import TaxLine, TaxSchedule
from .timebands import BandTimeline, CompiledSchedule, ZoneOffsets

# -- the engine ---------------------------------------------------------------------


class RatingEngine(TariffSelection, PricingArithmetic, ChargeExplanation):
    """Rates events against one catalog snapshot. Build a new engine for a new catalog."""

    def __init__(self, catalog: Catalog) -> None:
        problems = validate_catalog(catalog)
        if problems:
            raise InvalidCatalog(problems)
        self.catalog = catalog
        self._numbering = catalog.numbering
        self._calendars = {c.code: c for c in catalog.calendars}
        self._schedules: dict[str, CompiledSchedule] = {}
        self._schedule_defs = {s.code: s for s in catalog.schedules}
        self._discounts = {d.code: d for d in catalog.discounts}
        self._rewards = {r.code: r for r in catalog.rewards}
        self._regions = {r.code: r for r in catalog.tax_regions}
        self._tax_schedules: dict[str, dict[str, TaxSchedule]] = {}
        self._zones: dict[str, ZoneOffsets] = {}
        self._timelines: dict[tuple[str | None, str], BandTimeline] = {}
        self._plans: dict[str, _Versions[_PlanVersion]] = {}
        for plan in catalog.plans:
            order = sorted(range(len(plan.versions)), key=lambda i: plan.versions[i].window)
            self._plans[plan.code] = _Versions(
                [plan.versions[i].window[0] for i in order],
                [_PlanVersion(plan, i, self) for i in order],
            )
        currencies = {plan.code: plan.currency for plan in catalog.plans}
        # plan code -> (packages by customer id, packages by group)
        self._packages: dict[
            str, tuple[dict[str, _Versions[_PackageVersion]], dict[str, _Versions[_PackageVersion]]]
        ] = {}
        for package in catalog.packages:
            versions = package.versions
            order = sorted(range(len(versions)), key=lambda i: versions[i].window)
            index: _Versions[_PackageVersion] = _Versions(
                [versions[i].window[0] for i in order],
                [
                    _PackageVersion(package.code, versions[i], self, currencies[package.plan])
                    for i in order
                ],
            )
            by_customer, by_group = self._packages.setdefault(package.plan, ({}, {}))
            if package.customer_id:
                by_customer[package.customer_id] = index
            else:
                by_group[package.group or ""] = index

    # -- public API ------------------------------------------------------------------

    def rate(self, event: UsageEvent) -> RatedCharge:
        """Price one event with the tariffs in force at its time."""
        resolved = self._resolve(event)
        return self._result(
            resolved, event, event.quantity, self._price(resolved, event, event.quantity)
        )

    def quote(self, event: UsageEvent) -> RatedCharge:
        """The price of ``event.quantity`` units now (RAT-8); rating without a usage record."""
        return self.rate(event)

    def units_for_amount(
        self, event: UsageEvent, amount: Decimal, basis: AmountBasis = AmountBasis.GROSS
    ) -> UnitsForAmount:
        """The greatest unit count, at most ``event.quantity``, whose charge is <= ``amount``.

        Exact: the answer respects increments, band splits, connection fee, cost
        limits, discounts and taxes because it is found by pricing candidate counts
        (a binary search on a charge that never decreases with the count; volume
        tiers, whose price can drop at a threshold, are searched tier by tier).
        """
        if amount < 0 or decimal_places(amount) > MAX_SCALE:
            raise InvalidEvent(
                "amount", f"must be a non-negative amount with at most {MAX_SCALE} decimals"
            )
        budget = to_nanos(amount)
        resolved = self._resolve(event)
        gross = basis is AmountBasis.GROSS

        def affordable(units: int) -> bool:
            priced = self._price(resolved, event, units)
            return (priced[11] if gross else priced[9]) <= budget

        best = 0
        for low, high in reversed(self._monotone_pieces(resolved, event, event.quantity)):
            if not affordable(low):
                continue
            if affordable(high):
                best = high
                break
            good, bad = low, high  # affordable(good), not affordable(bad)
            while bad - good > 1:
                middle = (good + bad) // 2
                if affordable(middle):
                    good = middle
                else:
                    bad = middle
            best = good
            break
        return UnitsForAmount(
            best, self._result(resolved, event, best, self._price(resolved, event, best))
        )

    def price_fee(
        self,
        plan_code: str,
        fee_code: str,
        at: datetime,
        tax_region: str,
        *,
        account_id: str = "",
        customer_id: str = "",
        group: str = "",
        days_used: int | None = None,
        days_in_cycle: int | None = None,
    ) -> RatedCharge:
        """A plan fee (recurring or one-time) with the plan's discounts and the region's taxes.

        A recurring fee for part of a cycle is prorated by ``days_used`` of
        ``days_in_cycle`` (both given, or neither for a full cycle).
        """
        instant = self._instant(at)
        plan = self._plan_at(plan_code, instant)
        fee = plan.fees.get(fee_code)
        if fee is None:
            raise UnknownFee(f"plan {plan_code} v{plan.version} has no fee {fee_code!r}")
        places = currency_exponent(plan.currency)
        service = fee.service or fee.code
        if isinstance(fee, RecurringFee) and days_used is not None and days_in_cycle is not None:
            try:
                amount = fee.prorated_nanos(days_used, days_in_cycle, places, Rounding.HALF_UP)
            except ValueError as exc:
                raise InvalidEvent("days_used", str(exc)) from exc
        else:
            amount = round_nanos(to_nanos(fee.amount), places, Rounding.HALF_UP)
        package = self._package_at(plan_code, customer_id, group, instant)
        taxes = self._taxes(tax_region, service, instant)
        discounts = self._applicable_discounts(plan, package, (), None, service, instant)
        # A rate-shaped stand-in, so a fee is reported like usage (its rate id is the fee code).
        fee_rate = _Rate(UsageRate(fee.code, service, Percentage(Decimal(0))), plan.currency)
        resolved: _Resolved = (plan, package, fee_rate, None, instant, taxes, discounts, None, None)
        lines = [UnitLine(fee.name or fee.code, 1, fee.amount, _decimal(amount, places))]
        applied, net, tax_amounts, gross = self._settle(taxes, discounts, amount, places)
        priced = (
            None,
            lines,
            0,
            1,
            amount,
            amount,
            amount,
            None,
            applied,
            net,
            tax_amounts,
            gross,
            None,
        )
        event = UsageEvent(
            record_id="",
            account_id=account_id,
            plan_code=plan_code,
            service=service,
            start=at,
            quantity=1,
        )
        return self._result(resolved, event, 1, priced)

    def referral_reward(self, code: str, at: datetime) -> ReferralReward:
        """The reward a referral earns at ``at``; ``UnknownReward`` if none is in force."""
        reward = self._rewards.get(code)
        if reward is None or not reward.in_force(self._instant(at)):
            raise UnknownReward(f"no referral reward {code!r} in force at {at.isoformat()}")
        return reward

    def has_plan(self, code: str) -> bool:
        return code in self._plans


__all__ = [
    "MAX_CALL_SECONDS",
    "MAX_QUANTITY",
    "AmountBasis",
    "BandSegment",
    "CostLimit",
    "DiscountLine",
    "RatedCharge",
    "RatingEngine",
    "TaxLine",
    "UnitsForAmount",
    "UsageEvent",
]
