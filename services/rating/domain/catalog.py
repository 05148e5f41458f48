"""The rating catalog: products, price plans, price packages, and what they refer to.

* A ``Product`` is a service customers use and events name ("voice", "sms",
  "data"), with the unit its quantities are counted in.
* A ``PricePlan`` has a currency and ``PlanVersion``s, each valid from an instant
  until the next (``valid_from`` inclusive, ``valid_to`` exclusive), so an event is
  always rated with the version in force at its time and a price change never
  rewrites the past. A version holds the rates (``UsageRate``), the time-band
  schedule, included allowances, fees and the discounts every subscriber gets.
* A ``PricePackage`` overrides a plan's rates for one customer or one group
  (reseller, segment), also versioned: the unique price package of the
  conference-call story. A package rate replaces the plan rate with the same
  service and destination and may add rates for destinations the plan lacks.
* Destinations, time-band schedules, holiday calendars, tax regions, discounts
  and referral rewards are catalog-wide and referred to by code or name.

``validate_catalog`` checks every rule that spans objects (references exist,
versions do not overlap, rates price every band their schedule can produce)
and names each problem by its path, in the same shape as the catalog
document (``plans[2].versions[0].rates[1].destination``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise

from services.common.errors import FieldViolation
from services.common.money import MAX_SCALE, Rounding, currency_exponent, is_known_currency

from .amounts import decimal_places
from .charge_models import Fee, UsageModel
from .destinations import DEFAULT_NUMBERING, DestinationTable, NumberingPlan
from .discounts import Discount, ReferralReward
from .tariffs import TimeTariff
from .taxes import TaxRegion
from .timebands import ANY_BAND, BandSchedule, HolidayCalendar, epoch_window

# The callback checks report problems through: (path, description).
_Add = Callable[[str, str], None]


class UsageUnit(StrEnum):
    """What a product's event quantities count."""

    SECOND = "second"
    BYTE = "byte"
    EVENT = "event"  # messages, API calls, conference joins
    UNIT = "unit"  # anything else, including amounts priced by percentage


@dataclass(frozen=True, slots=True)
class Product:
    """A service customers use; events name it by ``code`` (their ``service``)."""

    code: str
    unit: UsageUnit
    name: str = ""


Pricing = TimeTariff | UsageModel


@dataclass(frozen=True, slots=True)
class UsageRate:
    """How one service (to one destination, or to any) is priced.

    ``destination`` None prices events of the service to any destination and events
    that have none (data sessions). Cost limits apply to the whole event charge
    including the connection fee; the amount is rounded to ``precision`` decimals
    (default: the currency's) with ``rounding`` before the limits apply.
    """

    id: str
    service: str
    pricing: Pricing
    destination: str | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    rounding: Rounding = Rounding.HALF_UP
    precision: int | None = None


@dataclass(frozen=True, slots=True)
class Allowance:
    """Units of a service the plan includes per bill cycle before charging starts."""

    code: str
    service: str
    units: int
    destinations: frozenset[str] = frozenset()  # empty: every destination

    def covers(self, service: str, destination: str | None) -> bool:
        return service == self.service and (
            not self.destinations or destination in self.destinations
        )


@dataclass(frozen=True, slots=True)
class PlanVersion:
    version: int
    valid_from: datetime
    valid_to: datetime | None = None
    rates: tuple[UsageRate, ...] = ()
    time_bands: str | None = None  # schedule code; None: one band, "*"
    allowances: tuple[Allowance, ...] = ()
    fees: tuple[Fee, ...] = ()
    discounts: tuple[str, ...] = ()  # discount codes every subscriber gets
    _window: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_window", epoch_window(self.valid_from, self.valid_to))

    @property
    def window(self) -> tuple[int, int]:
        """[valid_from, valid_to) in epoch seconds."""
        return self._window


@dataclass(frozen=True, slots=True)
class PricePlan:
    code: str
    currency: str
    versions: tuple[PlanVersion, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class PackageVersion:
    version: int
    valid_from: datetime
    valid_to: datetime | None = None
    rates: tuple[UsageRate, ...] = ()
    discounts: tuple[str, ...] = ()
    _window: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_window", epoch_window(self.valid_from, self.valid_to))

    @property
    def window(self) -> tuple[int, int]:
        return self._window


@dataclass(frozen=True, slots=True)
class PricePackage:
    """Rates that override ``plan``'s for one customer or one group (exactly one is set).

    A customer's package wins over a group's when both exist for the plan.
    """

    code: str
    plan: str
    versions: tuple[PackageVersion, ...]
    customer_id: str | None = None
    group: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything rating needs, as one immutable snapshot."""

    products: tuple[Product, ...] = ()
    destinations: DestinationTable = field(default_factory=DestinationTable.empty)
    calendars: tuple[HolidayCalendar, ...] = ()
    schedules: tuple[BandSchedule, ...] = ()
    tax_regions: tuple[TaxRegion, ...] = ()
    discounts: tuple[Discount, ...] = ()
    rewards: tuple[ReferralReward, ...] = ()
    plans: tuple[PricePlan, ...] = ()
    packages: tuple[PricePackage, ...] = ()
    numbering: NumberingPlan = DEFAULT_NUMBERING

    def plan(self, code: str) -> PricePlan | None:
        return next((plan for plan in self.plans if plan.code == code), None)

    def plan_codes(self) -> frozenset[str]:
        """Codes accounts may subscribe to (ACC-2 refuses others)."""
        return frozenset(plan.code for plan in self.plans)


def validate_catalog(catalog: Catalog) -> list[FieldViolation]:
    """Every cross-object problem of ``catalog``, each with the path of the field at fault."""
    problems: list[FieldViolation] = []

    def add(path: str, description: str) -> None:
        problems.append(FieldViolation(path, description))

    products = {p.code: p for p in catalog.products}
    _unique(add, "products", (p.code for p in catalog.products), "code")
    calendars = {c.code: c for c in catalog.calendars}
    _unique(add, "calendars", (c.code for c in catalog.calendars), "code")
    schedules = {s.code: s for s in catalog.schedules}
    _unique(add, "time_bands", (s.code for s in catalog.schedules), "code")
    for index, schedule in enumerate(catalog.schedules):
        if schedule.calendar is not None and schedule.calendar not in calendars:
            add(f"time_bands[{index}].calendar", f"no calendar {schedule.calendar!r}")
    _unique(add, "tax_regions", (r.code for r in catalog.tax_regions), "code")
    for index, region in enumerate(catalog.tax_regions):
        _unique(add, f"tax_regions[{index}].taxes", (t.code for t in region.taxes), "code")
    discounts = {d.code for d in catalog.discounts}
    _unique(add, "discounts", (d.code for d in catalog.discounts), "code")
    _unique(add, "referral_rewards", (r.code for r in catalog.rewards), "code")

    def bands_of(code: str | None) -> frozenset[str]:
        if code is None or code not in schedules:
            return frozenset({ANY_BAND})
        schedule = schedules[code]
        return schedule.band_names(calendars.get(schedule.calendar or ""))

    def check_rates(
        path: str, rates: tuple[UsageRate, ...], currency: str, bands: frozenset[str]
    ) -> None:
        _unique(add, f"{path}.rates", (r.id for r in rates), "id")
        seen: dict[tuple[str, str | None], int] = {}
        for index, rate in enumerate(rates):
            here = f"{path}.rates[{index}]"
            key = (rate.service, rate.destination)
            if key in seen:
                add(
                    here,
                    f"rates[{seen[key]}] already prices {rate.service} to "
                    f"{rate.destination or 'any destination'}",
                )
            seen.setdefault(key, index)
            product = products.get(rate.service)
            if product is None:
                add(f"{here}.service", f"no product {rate.service!r}")
            elif isinstance(rate.pricing, TimeTariff) and product.unit is not UsageUnit.SECOND:
                add(
                    f"{here}.service",
                    f"a time tariff needs a product counted in seconds, "
                    f"{rate.service} counts {product.unit}",
                )
            if rate.destination is not None and rate.destination not in catalog.destinations:
                add(f"{here}.destination", f"no destination {rate.destination!r}")
            _check_rate_amounts(add, here, rate, currency)
            if isinstance(rate.pricing, TimeTariff):
                missing = sorted(b for b in bands if not rate.pricing.covers(b))
                if missing:
                    add(
                        f"{here}.prices",
                        f"no price for time band(s) {', '.join(missing)} "
                        f"(give them or a '*' price)",
                    )

    def check_discount_codes(path: str, codes: tuple[str, ...]) -> None:
        for index, code in enumerate(codes):
            if code not in discounts:
                add(f"{path}.discounts[{index}]", f"no discount {code!r}")

    _unique(add, "plans", (p.code for p in catalog.plans), "code")
    plans = {p.code: p for p in catalog.plans}
    for plan_index, plan in enumerate(catalog.plans):
        here = f"plans[{plan_index}]"
        if not is_known_currency(plan.currency):
            add(f"{here}.currency", f"unknown currency {plan.currency!r}")
            continue
        if not plan.versions:
            add(f"{here}.versions", "a plan needs at least one version")
        _check_versions(add, here, plan.versions)
        for version_index, version in enumerate(plan.versions):
            at = f"{here}.versions[{version_index}]"
            if version.time_bands is not None and version.time_bands not in schedules:
                add(f"{at}.time_bands", f"no time band schedule {version.time_bands!r}")
            check_rates(at, version.rates, plan.currency, bands_of(version.time_bands))
            check_discount_codes(at, version.discounts)
            _unique(add, f"{at}.fees", (f.code for f in version.fees), "code")
            _unique(add, f"{at}.allowances", (a.code for a in version.allowances), "code")
            for allowance_index, allowance in enumerate(version.allowances):
                if allowance.service not in products:
                    add(
                        f"{at}.allowances[{allowance_index}].service",
                        f"no product {allowance.service!r}",
                    )
                for name in sorted(allowance.destinations - catalog.destinations.names()):
                    add(
                        f"{at}.allowances[{allowance_index}].destinations",
                        f"no destination {name!r}",
                    )

    _unique(add, "packages", (p.code for p in catalog.packages), "code")
    owners: dict[tuple[str, str, str], int] = {}
    for package_index, package in enumerate(catalog.packages):
        here = f"packages[{package_index}]"
        if (package.customer_id is None) == (package.group is None):
            add(here, "a package is for one customer or one group: set exactly one")
        owner = (
            ("customer", package.customer_id)
            if package.customer_id
            else ("group", package.group or "")
        )
        key = (package.plan, *owner)
        if key in owners:
            add(
                here,
                f"packages[{owners[key]}] already overrides {package.plan} "
                f"for {owner[0]} {owner[1]}",
            )
        owners.setdefault(key, package_index)
        parent = plans.get(package.plan)
        if parent is None:
            add(f"{here}.plan", f"no plan {package.plan!r}")
            continue
        _check_versions(add, here, package.versions)
        for version_index, package_version in enumerate(package.versions):
            start, end = package_version.window
            # A package rate must price every band of every plan version it can meet.
            bands: set[str] = set()
            for plan_version in parent.versions:
                plan_start, plan_end = plan_version.window
                if plan_start < end and start < plan_end:
                    bands |= bands_of(plan_version.time_bands)
            at = f"{here}.versions[{version_index}]"
            if is_known_currency(parent.currency):
                check_rates(at, package_version.rates, parent.currency, frozenset(bands))
            check_discount_codes(at, package_version.discounts)
    return problems


def _unique(add: _Add, path: str, codes: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for index, code in enumerate(codes):
        if not code:
            add(f"{path}[{index}].{what}", "is required")
        elif code in seen:
            add(f"{path}[{index}].{what}", f"{code!r} is used twice")
        seen.add(code)


def _check_versions(add: _Add, path: str, versions: Iterable[PlanVersion | PackageVersion]) -> None:
    ordered = sorted(enumerate(versions), key=lambda item: item[1].window)
    numbers: set[int] = set()
    for index, version in enumerate(versions):
        at = f"{path}.versions[{index}]"
        if version.version in numbers:
            add(f"{at}.version", f"version {version.version} is used twice")
        numbers.add(version.version)
        start, end = version.window
        if end <= start:
            add(f"{at}.valid_to", "must be after valid_from")
    for (_, earlier), (later_index, later) in pairwise(ordered):
        if later.window[0] < earlier.window[1]:
            add(
                f"{path}.versions[{later_index}].valid_from",
                f"overlaps version {earlier.version}: versions must not overlap",
            )


def _check_rate_amounts(add: _Add, path: str, rate: UsageRate, currency: str) -> None:
    places = currency_exponent(currency) if rate.precision is None else rate.precision
    if not 0 <= places <= MAX_SCALE:
        add(f"{path}.precision", f"must be 0..{MAX_SCALE}")
        return
    for name in ("min_cost", "max_cost"):
        limit = getattr(rate, name)
        if limit is not None and (limit < 0 or decimal_places(limit) > places):
            add(f"{path}.{name}", f"must be a non-negative amount with at most {places} decimals")
    if rate.min_cost is not None and rate.max_cost is not None and rate.min_cost > rate.max_cost:
        add(f"{path}.max_cost", "must not be below min_cost")


__all__ = [
    "Allowance",
    "Catalog",
    "PackageVersion",
    "PlanVersion",
    "PricePackage",
    "PricePlan",
    "Pricing",
    "Product",
    "UsageRate",
    "UsageUnit",
    "validate_catalog",
]
