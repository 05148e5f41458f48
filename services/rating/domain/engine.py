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
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final, Generic, TypeVar
from zoneinfo import ZoneInfo

from services.common.money import MAX_SCALE, Money, Rounding, currency_exponent

from .amounts import (
    decimal_places,
    from_nanos,
    plain,
    round_nanos,
    round_ratio,
    shown_amount,
    step,
    to_nanos,
)
from .catalog import (
    Allowance,
    Catalog,
    PackageVersion,
    PricePlan,
    UsageRate,
    validate_catalog,
)
from .charge_models import (
    Fee,
    Percentage,
    PerUnit,
    RecurringFee,
    UnitLine,
    UsageModel,
    VolumeTiers,
)
from .destinations import longest_prefix, normalise_number
from .discounts import Discount, DiscountKind, ReferralReward
from .errors import (
    InvalidCatalog,
    InvalidEvent,
    NoTariff,
    PlanNotInForce,
    UnknownDiscount,
    UnknownFee,
    UnknownPlan,
    UnknownReward,
    UnknownTaxRegion,
    UnknownTimeZone,
)
from .tariffs import CallCharge, TimeTariff, price_call
from .taxes import TaxLine, TaxSchedule, TaxSet
from .timebands import (
    BandTimeline,
    CompiledSchedule,
    ZoneOffsets,
    epoch_seconds,
)

# Longest call the engine rates in one piece; longer records are refused as suspect.
MAX_CALL_SECONDS: Final = 31 * 86_400
MAX_QUANTITY: Final = 10**15
# Events outside these years are data errors (and beyond what time zone data covers).
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST: Final = epoch_seconds(datetime(1900, 1, 1, tzinfo=UTC))
_LATEST: Final = epoch_seconds(datetime(2200, 1, 1, tzinfo=UTC))
_ANY_DESTINATION: Final = ""


# -- input --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class UsageEvent:
    """One usage record to rate, or the question of a price quote.

    ``plan_code`` is the account's subscribed plan (the service layer resolves it
    from the subscription). ``quantity`` counts the product's unit: seconds,
    bytes, events. ``allowance_remaining`` is what is left of the plan's included
    units for this service in the current cycle, ``usage_to_date`` the chargeable
    units already rated in the cycle (for packages and tiers), ``discount_uses``
    the uses left of count-limited discounts by code; the engine keeps no
    counters, and absent counters mean "none left". ``start`` must be aware; its
    fraction of a second is ignored (CDRs count whole seconds).
    """

    record_id: str
    account_id: str
    plan_code: str
    service: str
    start: datetime
    quantity: int
    destination: str = ""
    customer_id: str = ""
    customer_ref: str = ""  # ``ext:<ref>``: packages may name the customer so
    group: str = ""
    time_zone: str = "UTC"
    tax_region: str = ""
    amount: Decimal | None = None  # the base of percentage rates
    allowance_remaining: int = 0
    usage_to_date: int = 0
    discount_uses: Mapping[str, int] | None = None
    promotions: tuple[str, ...] = ()  # discount codes the account holds (coupons)


class AmountBasis(StrEnum):
    """Which amount ``units_for_amount`` compares: prepaid balances hold gross money."""

    GROSS = "gross"
    NET = "net"


# -- output -------------------------------------------------------------------------


class CostLimit(StrEnum):
    MINIMUM = "minimum"
    MAXIMUM = "maximum"


# Plain references: enum member lookup through the metaclass is slow on the rating path.
_MINIMUM: Final = CostLimit.MINIMUM
_MAXIMUM: Final = CostLimit.MAXIMUM


@dataclass(slots=True)
class BandSegment:
    """The part of a call in one time band and what it was charged."""

    band: str
    offset: int  # seconds from the start of the call
    seconds: int  # real seconds of the call in this band
    first_increment: Decimal  # price of the first increment when charged here, else 0
    increments: int  # subsequent increments charged in this segment
    increment_seconds: int
    increment_price: Decimal
    amount: Decimal


@dataclass(slots=True)
class DiscountLine:
    code: str
    kind: DiscountKind
    value: Decimal  # percent or amount, as defined
    amount: Decimal  # taken off
    counted: bool  # count-limited: the caller should record one use


@dataclass(slots=True)
class RatedCharge:
    """The price of one event and how it came about (amounts in ``currency``)."""

    record_id: str
    account_id: str
    service: str
    currency: str
    quantity: int
    allowance_units: int  # drawn from the included allowance
    charged_units: int  # billed units: seconds rounded to increments, or units after allowance
    usage_amount: Decimal  # after rounding and cost limits, before discounts
    discount: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal
    plan_code: str
    plan_version: int
    package_code: str | None
    package_version: int | None
    rate_id: str
    destination: str | None
    matched_prefix: str | None
    connection_fee: Decimal
    segments: list[BandSegment]
    unit_lines: list[UnitLine]
    rounding_adjustment: Decimal
    cost_limit: CostLimit | None
    limit_adjustment: Decimal
    discounts: list[DiscountLine]
    taxes: list[TaxLine]

    def money(self, amount: Decimal) -> Money:
        """One of this charge's amounts as ``Money``."""
        return Money(amount, self.currency)

    @property
    def gross_money(self) -> Money:
        return Money(self.gross, self.currency)

    @property
    def net_money(self) -> Money:
        return Money(self.net, self.currency)


@dataclass(slots=True)
class UnitsForAmount:
    """The most units (up to the requested quantity) an amount pays for, and their charge."""

    units: int
    charge: RatedCharge


# -- compiled catalog ---------------------------------------------------------------


class _Rate:
    """A usage rate with its amounts in nanos and its display prices precomputed."""

    __slots__ = (
        "connection",
        "denominator",
        "destination",
        "detail_places",
        "id",
        "max",
        "min",
        "model",
        "places",
        "rounding",
        "step",
        "tariff",
        "zero",
    )

    def __init__(self, rate: UsageRate, currency: str) -> None:
        self.id = rate.id
        self.destination = rate.destination
        self.places = currency_exponent(currency) if rate.precision is None else rate.precision
        self.rounding = rate.rounding
        self.min = None if rate.min_cost is None else to_nanos(rate.min_cost)
        self.max = None if rate.max_cost is None else to_nanos(rate.max_cost)
        pricing = rate.pricing
        self.tariff: TimeTariff | None = pricing if isinstance(pricing, TimeTariff) else None
        self.model: UsageModel | None = None if isinstance(pricing, TimeTariff) else pricing
        # Every line of a time tariff is a whole number of prices, so it is exact at the
        # precision of its finest price.
        places = self.places
        if self.tariff is not None:
            prices = [self.tariff.connection_fee] + [
                amount
                for price in self.tariff.prices.values()
                for amount in (price.first_price, price.next_price, price.connection_fee)
                if amount is not None
            ]
            places = max([places, *map(decimal_places, prices)])
        self.detail_places = min(places, MAX_SCALE)
        self.zero = from_nanos(0, self.places)
        self.step = step(self.places)
        self.connection = self.tariff.connection_fee if self.tariff is not None else Decimal(0)
        # Prices per rate unit (ADR 0041): the exact charge is raw / denominator nanos.
        if self.tariff is not None:
            self.denominator = self.tariff.denominator
        else:
            self.denominator = pricing.denominator if isinstance(pricing, PerUnit) else 1


_Service = tuple[dict[str, _Rate], int]  # prefix (or "" for any) -> rate, longest prefix


def _compile_rates(
    rates: Sequence[UsageRate], currency: str, catalog: Catalog
) -> dict[str, _Service]:
    maps: dict[str, dict[str, _Rate]] = {}
    for rate in rates:
        compiled = _Rate(rate, currency)
        table = maps.setdefault(rate.service, {})
        if rate.destination is None:
            table[_ANY_DESTINATION] = compiled
        else:
            for prefix in catalog.destinations.prefixes_of(rate.destination):
                table[prefix] = compiled
    return {service: (table, max(map(len, table), default=0)) for service, table in maps.items()}


class _PlanVersion:
    __slots__ = (
        "allowances",
        "currency",
        "discounts",
        "end",
        "fees",
        "plan_code",
        "schedule",
        "services",
        "timelines",
        "version",
    )

    def __init__(self, plan: PricePlan, index: int, engine: RatingEngine) -> None:
        version = plan.versions[index]
        self.plan_code = plan.code
        self.version = version.version
        self.currency = plan.currency
        self.end = version.window[1]
        self.schedule = engine._schedule(version.time_bands)
        self.services = _compile_rates(version.rates, plan.currency, engine.catalog)
        self.allowances = version.allowances
        self.discounts = tuple(engine._discount(code) for code in version.discounts)
        self.fees: dict[str, Fee] = {fee.code: fee for fee in version.fees}
        self.timelines: dict[str, BandTimeline] = {}  # by zone name, filled on first use

    def allowance_for(self, service: str, destination: str | None) -> Allowance | None:
        for allowance in self.allowances:
            if allowance.covers(service, destination):
                return allowance
        return None


class _PackageVersion:
    __slots__ = ("code", "discounts", "end", "services", "version")

    def __init__(
        self, code: str, version: PackageVersion, engine: RatingEngine, currency: str
    ) -> None:
        self.code = code
        self.version = version.version
        self.end = version.window[1]
        self.services = _compile_rates(version.rates, currency, engine.catalog)
        self.discounts = tuple(engine._discount(code) for code in version.discounts)


V = TypeVar("V", _PlanVersion, _PackageVersion)


class _Versions(Generic[V]):
    """Versions sorted by start; ``at`` finds the one in force at an instant."""

    __slots__ = ("entries", "starts")

    def __init__(self, starts: list[int], entries: list[V]) -> None:
        self.starts = starts
        self.entries: list[V] = entries

    def at(self, instant: int) -> V | None:
        index = bisect_right(self.starts, instant) - 1
        if index < 0:
            return None
        entry = self.entries[index]
        return entry if instant < entry.end else None


# Everything about an event that does not depend on its quantity: (plan version, package
# version or None, rate, matched prefix or None, epoch second, taxes, discounts, band
# timeline (time tariffs) or None, allowance or None). A plain tuple: one per rated event.
_Resolved = tuple[
    _PlanVersion,
    _PackageVersion | None,
    _Rate,
    str | None,
    int,
    TaxSet,
    tuple[Discount, ...],
    BandTimeline | None,
    Allowance | None,
]


# What pricing a quantity produced, in nanos, before it is dressed as a ``RatedCharge``:
# (call, unit lines, units drawn from the allowance, units charged, exact usage charge,
# rounded, within cost limits, cost limit applied, discounts applied, net, tax per rule,
# gross, tax lines when already known). A plain tuple because one is built for every
# rated event.
_Priced = tuple[
    CallCharge | None,
    list[UnitLine],
    int,
    int,
    int,
    int,
    int,
    CostLimit | None,
    list[tuple[Discount, int]],
    int,
    list[int],
    int,
    list[TaxLine] | None,
]


# -- the engine ---------------------------------------------------------------------


class RatingEngine:
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

    # -- resolution ------------------------------------------------------------------

    def _resolve(self, event: UsageEvent) -> _Resolved:
        # The hot path of rating: helpers are inlined where a call would cost more than
        # the work it does.
        start = event.start
        zone = start.tzinfo
        if zone is not UTC and (zone is None or start.utcoffset() is None):
            raise InvalidEvent("start", "needs a time zone: event times are instants (UTC)")
        delta = start - _EPOCH
        instant = delta.days * 86_400 + delta.seconds
        if not _EARLIEST <= instant < _LATEST:
            raise InvalidEvent("start", f"{start.isoformat()} is outside 1900-2199")
        versions = self._plans.get(event.plan_code)
        plan = versions.at(instant) if versions is not None else None
        if plan is None:
            plan = self._plan_at(event.plan_code, instant)  # raises the reason
        package = (
            self._package_at(
                event.plan_code, event.customer_id, event.group, instant, event.customer_ref
            )
            if event.plan_code in self._packages
            else None
        )
        service = event.service
        plan_rates = plan.services.get(service)
        package_rates = package.services.get(service) if package is not None else None
        if plan_rates is None and package_rates is None:
            raise NoTariff(
                f"plan {plan.plan_code} v{plan.version} has no rate for service {service!r}"
            )
        # Services priced without destinations (data) ignore whatever destination is given.
        by_destination = (plan_rates is not None and plan_rates[1] > 0) or (
            package_rates is not None and package_rates[1] > 0
        )
        number = (
            normalise_number(event.destination, self._numbering)
            if event.destination and by_destination
            else ""
        )
        found = None
        if package_rates is not None:
            found = longest_prefix(package_rates[0], number, package_rates[1])
        if plan_rates is not None:
            shortest = len(found[0]) + 1 if found is not None else 0
            found = longest_prefix(plan_rates[0], number, plan_rates[1], shortest) or found
        if found is None:
            raise NoTariff(
                f"plan {plan.plan_code} v{plan.version} has no {service} rate "
                f"for destination {number or '(none)'}"
            )
        prefix, rate = found
        quantity = event.quantity
        if quantity < 0:
            raise InvalidEvent("quantity", "must not be negative")
        if quantity > (MAX_CALL_SECONDS if rate.tariff is not None else MAX_QUANTITY):
            raise InvalidEvent("quantity", f"{quantity} is too large for one {service} event")
        schedules = self._tax_schedules.get(event.tax_region)
        schedule = schedules.get(service) if schedules is not None else None
        if schedule is None:
            schedule = self._tax_schedule(event.tax_region, service)
        discounts = (
            self._applicable_discounts(
                plan, package, event.promotions, event.discount_uses, service, instant
            )
            if plan.discounts or event.promotions or (package is not None and package.discounts)
            else ()
        )
        timeline = None
        if rate.tariff is not None:
            timeline = plan.timelines.get(event.time_zone) or self._timeline(plan, event.time_zone)
        allowance = (
            plan.allowance_for(service, rate.destination)
            if plan.allowances and event.allowance_remaining > 0
            else None
        )
        return (
            plan,
            package,
            rate,
            prefix or None,
            instant,
            schedule.constant or schedule.at(instant),
            discounts,
            timeline,
            allowance,
        )

    def _instant(self, moment: datetime) -> int:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidEvent("start", "needs a time zone: event times are instants (UTC)")
        instant = epoch_seconds(moment)
        if not _EARLIEST <= instant < _LATEST:
            raise InvalidEvent("start", f"{moment.isoformat()} is outside 1900-2199")
        return instant

    def _plan_at(self, code: str, instant: int) -> _PlanVersion:
        versions = self._plans.get(code)
        if versions is None:
            raise UnknownPlan(f"no price plan {code!r}")
        plan = versions.at(instant)
        if plan is None:
            raise PlanNotInForce(
                f"no version of plan {code!r} is in force at "
                f"{datetime.fromtimestamp(instant, UTC).isoformat()}"
            )
        return plan

    def _package_at(
        self, plan_code: str, customer_id: str, group: str, instant: int, customer_ref: str = ""
    ) -> _PackageVersion | None:
        packages = self._packages.get(plan_code)
        if packages is None:
            return None
        by_customer, by_group = packages
        package = None
        for customer in (customer_id, customer_ref):
            versions = by_customer.get(customer) if customer else None
            if versions is not None:
                package = versions.at(instant)
                break
        if package is None and group:
            versions = by_group.get(group)
            if versions is not None:
                package = versions.at(instant)
        return package

    def _taxes(self, region_code: str, service: str, instant: int) -> TaxSet:
        """The taxes of a region for a service at an instant."""
        return self._tax_schedule(region_code, service).at(instant)

    def _tax_schedule(self, region_code: str, service: str) -> TaxSchedule:
        """The tax schedule of a region for a service, built on first use."""
        schedules = self._tax_schedules.get(region_code)
        if schedules is None:
            region = self._regions.get(region_code)
            if region is None:
                raise UnknownTaxRegion(f"no tax region {region_code!r}")
            schedules = self._tax_schedules[region_code] = {}
        schedule = schedules.get(service)
        if schedule is None:
            schedule = schedules[service] = TaxSchedule(self._regions[region_code], service)
        return schedule

    def _zone(self, name: str) -> ZoneOffsets:
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneOffsets(ZoneInfo(name))
            except (KeyError, ValueError, OSError) as exc:
                raise UnknownTimeZone(name) from exc
            self._zones[name] = zone
        return zone

    def _timeline(self, plan: _PlanVersion, zone_name: str) -> BandTimeline:
        """The band timeline of a plan version's schedule in a zone, shared between versions."""
        key = (plan.schedule.code if plan.schedule is not None else None, zone_name)
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = self._timelines[key] = BandTimeline(plan.schedule, self._zone(zone_name))
        plan.timelines[zone_name] = timeline
        return timeline

    def _schedule(self, code: str | None) -> CompiledSchedule | None:
        if code is None:
            return None
        compiled = self._schedules.get(code)
        if compiled is None:
            schedule = self._schedule_defs[code]
            calendar = self._calendars.get(schedule.calendar) if schedule.calendar else None
            compiled = self._schedules[code] = CompiledSchedule(schedule, calendar)
        return compiled

    def _discount(self, code: str) -> Discount:
        discount = self._discounts.get(code)
        if discount is None:
            raise UnknownDiscount(f"no discount {code!r}")
        return discount

    def _applicable_discounts(
        self,
        plan: _PlanVersion,
        package: _PackageVersion | None,
        promotions: tuple[str, ...],
        uses: Mapping[str, int] | None,
        service: str,
        instant: int,
    ) -> tuple[Discount, ...]:
        candidates = [
            *plan.discounts,
            *(package.discounts if package else ()),
            *(self._discount(code) for code in promotions),
        ]
        chosen: list[Discount] = []
        for discount in candidates:
            if discount in chosen or not discount.applies(service, instant):
                continue
            if discount.max_uses is not None and (uses is None or uses.get(discount.code, 0) <= 0):
                continue
            chosen.append(discount)
        return tuple(chosen)

    # -- pricing ---------------------------------------------------------------------

    def _price(self, resolved: _Resolved, event: UsageEvent, quantity: int) -> _Priced:
        _, _, rate, _, instant, taxes, discounts, timeline, allowance_rule = resolved
        tariff = rate.tariff
        call = None
        lines: list[UnitLine] = []
        if tariff is not None:
            if quantity:
                assert timeline is not None
                parts = timeline.split(instant, quantity)
                remaining = event.allowance_remaining if allowance_rule is not None else 0
                call = price_call(tariff, parts, remaining, rate.id)
                raw, allowance, charged = call[4], call[3], call[2]
            else:
                raw = allowance = charged = 0
        else:
            model = rate.model
            if isinstance(model, Percentage):
                base = self._base_amount(event)
                allowance, charged = 0, quantity
                raw, lines = model.price_amount(base, rate.places, rate.rounding)
            else:
                assert model is not None
                remaining = event.allowance_remaining if allowance_rule is not None else 0
                allowance = remaining if remaining < quantity else quantity
                charged = quantity - allowance
                raw = 0
                if charged:
                    raw, lines = model.price_usage(charged, event.usage_to_date)
        places = rate.places
        if rate.denominator == 1:
            rounded = raw if raw % rate.step == 0 else round_nanos(raw, places, rate.rounding)
        else:  # a price per rate unit: the exact fraction, rounded once
            rounded = round_ratio(raw, rate.denominator, places, rate.rounding)
        usage = rounded
        limit = None
        if charged and raw >= 0:
            if rate.min is not None and usage < rate.min:
                usage, limit = rate.min, _MINIMUM
            elif rate.max is not None and usage > rate.max:
                usage, limit = rate.max, _MAXIMUM
        tax_lines = None
        if discounts:
            applied, net, tax_amounts, gross = self._settle(taxes, discounts, usage, places)
        else:
            applied = []
            net, tax_amounts, gross, tax_lines = taxes.settle(usage, places)
        return (
            call,
            lines,
            allowance,
            charged,
            raw,
            rounded,
            usage,
            limit,
            applied,
            net,
            tax_amounts,
            gross,
            tax_lines,
        )

    @staticmethod
    def _settle(
        taxes: TaxSet, discounts: tuple[Discount, ...], usage: int, places: int
    ) -> tuple[list[tuple[Discount, int]], int, list[int], int]:
        """Discounts, then taxes: (discounts applied, net, tax per rule, gross)."""
        left = usage
        applied: list[tuple[Discount, int]] = []
        for discount in discounts:  # usually none
            off = discount.amount_off(left, places)
            if off:
                applied.append((discount, off))
                left -= off
        net, tax_amounts, gross = taxes.apply(left, places)
        return applied, net, tax_amounts, gross

    @staticmethod
    def _base_amount(event: UsageEvent) -> int:
        if event.amount is None:
            raise InvalidEvent(
                "amount",
                f"a {event.service} event is priced as a percentage of an amount and needs one",
            )
        try:
            return to_nanos(event.amount)
        except ValueError as exc:
            raise InvalidEvent("amount", str(exc)) from exc

    def _monotone_pieces(
        self, resolved: _Resolved, event: UsageEvent, limit: int
    ) -> list[tuple[int, int]]:
        """Ranges of unit counts on which the charge never decreases, in order."""
        model = resolved[2].model
        if not isinstance(model, VolumeTiers):
            return [(0, limit)]
        # The charge can drop where the cycle total passes a tier's upper bound.
        offset = event.allowance_remaining if resolved[8] is not None else 0
        cuts = sorted(
            {
                high * model.unit_size - event.usage_to_date + 1 + offset
                for high in model.threshold_units()
            }
        )
        pieces: list[tuple[int, int]] = []
        low = 0
        for cut in cuts:
            if low < cut <= limit:
                pieces.append((low, cut - 1))
                low = cut
        pieces.append((low, limit))
        return pieces

    # -- result ----------------------------------------------------------------------

    def _result(
        self, resolved: _Resolved, event: UsageEvent, quantity: int, priced: _Priced
    ) -> RatedCharge:
        (
            call,
            lines,
            allowance,
            charged,
            raw,
            rounded,
            usage,
            limit,
            applied,
            net,
            tax_amounts,
            gross,
            known_tax_lines,
        ) = priced
        plan, package, rate, prefix, _, taxes, _, _, _ = resolved
        decimals = _DECIMALS[rate.places]
        zero = rate.zero
        segments: list[BandSegment] = []
        connection = zero
        denominator = rate.denominator
        if call is not None:
            tariff = rate.tariff
            assert tariff is not None
            detail = _DECIMALS[rate.detail_places]
            if call[0]:
                connection = (
                    tariff.connection_fee_in(call[1][0][0])
                    if tariff.band_connection_fees
                    else rate.connection
                )
            increment = tariff.next_increment
            for band, offset, seconds, first, increments, prices, amount in call[1]:
                segments.append(
                    BandSegment(
                        band,
                        offset,
                        seconds,
                        prices.first_price if first else zero,
                        increments,
                        increment,
                        prices.next_price,
                        detail[amount] if denominator == 1 else shown_amount(amount, denominator),
                    )
                )
            if denominator == 1:
                rounding = detail[rounded - raw] if rounded != raw else zero
            else:  # what the shown lines (nine places) leave to the one rounding
                rounding = plain(
                    from_nanos(rounded, MAX_SCALE) - connection - sum(s.amount for s in segments)
                )
        elif denominator == 1:
            rounding = _exact(rounded - raw)
        else:
            rounding = plain(from_nanos(rounded, MAX_SCALE) - sum(u.amount for u in lines))
        if known_tax_lines is not None:
            tax_lines = list(known_tax_lines)  # a copy: the memoised list is shared
        else:
            tax_lines = taxes.lines(tax_amounts, rate.places) if tax_amounts else []
        discount_lines = [
            DiscountLine(d.code, d.kind, d.value, decimals[off], d.max_uses is not None)
            for d, off in applied
        ]
        return RatedCharge(
            event.record_id,
            event.account_id,
            event.service,
            plan.currency,
            quantity,
            allowance,
            charged,
            decimals[usage],
            decimals[sum(off for _, off in applied)] if applied else zero,
            decimals[net],
            decimals[gross - net] if gross != net else zero,
            decimals[gross],
            plan.plan_code,
            plan.version,
            package.code if package is not None else None,
            package.version if package is not None else None,
            rate.id,
            rate.destination,
            prefix,
            connection,
            segments,
            lines,
            rounding,
            limit,
            decimals[usage - rounded] if limit is not None else zero,
            discount_lines,
            tax_lines,
        )


class _DecimalCache(dict[int, Decimal]):
    """Decimals of nanos at one precision, built on first use: rated amounts repeat (a
    tariff has few distinct call costs) and a dict hit is cheaper than building a Decimal."""

    __slots__ = ("places",)

    def __init__(self, places: int) -> None:
        super().__init__()
        self.places = places

    def __missing__(self, nanos: int) -> Decimal:
        value = from_nanos(nanos, self.places)
        if len(self) < _DECIMALS_LIMIT:
            self[nanos] = value
        return value


_DECIMALS_LIMIT: Final = 1 << 16
_DECIMALS: Final = tuple(_DecimalCache(places) for places in range(MAX_SCALE + 1))


def _decimal(nanos: int, places: int) -> Decimal:
    """``from_nanos`` for an amount already at ``places`` precision, memoised."""
    return _DECIMALS[places][nanos]


def _exact(nanos: int) -> Decimal:
    """An exact amount at nine places with trailing zeros dropped (0.005, not 0.005000000)."""
    return plain(from_nanos(nanos, MAX_SCALE))


__all__ = [
    "MAX_CALL_SECONDS",
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
