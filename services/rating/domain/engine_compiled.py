"""The catalog as the engine compiles it: rates in nanos, prefix maps, versions by start.

A ``_Rate`` holds one usage rate's amounts in nanos and its display precision;
``_PlanVersion`` and ``_PackageVersion`` hold a version's rates as prefix maps per
service; ``_Versions`` finds the version in force at an instant. ``_Resolved`` and
``_Priced`` are the plain tuples the engine passes between tariff selection,
pricing and the result (plain tuples because one is built for every rated event).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from services.common.money import MAX_SCALE, currency_exponent

from .amounts import decimal_places, from_nanos, step, to_nanos
from .catalog import Allowance, Catalog, PackageVersion, PricePlan, UsageRate
from .charge_models import Fee, PerUnit, UnitLine, UsageModel
from .discounts import Discount
from .engine_events import CostLimit
from .tariffs import CallCharge, TimeTariff
from .taxes import TaxLine, TaxSet
from .timebands import BandTimeline

if TYPE_CHECKING:
    from .engine import RatingEngine

_ANY_DESTINATION: Final = ""


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
