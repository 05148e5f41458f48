"""Rates in the catalog document: time tariffs (increments, prices per band) and
usage charge models (per unit, package, graduated and volume tiers, percentage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Final

from services.common.money import MAX_SCALE, Rounding

from .amounts import NANOS_PER_UNIT, plain
from .catalog import Pricing, UsageRate
from .charge_models import (
    GraduatedTiers,
    Package,
    Percentage,
    PerUnit,
    Tier,
    UsageModel,
    VolumeTiers,
)
from .document_fields import FieldReader, _at, _kind
from .tariffs import BandPrice, TimeTariff
from .timebands import ANY_BAND


class RateReader(FieldReader):
    """Reads one rate: its pricing is a time tariff or a usage charge model."""

    def rate(self, value: object, path: str) -> UsageRate | None:
        obj = self.record(value, path, _RATE_FIELDS | _TIME_FIELDS)
        if obj is None:
            return None
        rate_id = self.text(obj, "id", path)
        service = self.text(obj, "service", path)
        destination = self.optional_text(obj, "destination", path)
        min_cost = self.decimal(obj, "min_cost", path, required=False)
        max_cost = self.decimal(obj, "max_cost", path, required=False)
        rounding = self.rounding(obj, path, Rounding.HALF_UP)
        precision = self.integer(obj, "precision", path, required=False)
        if precision is not None and precision > MAX_SCALE:
            self.problem(_at(path, "precision"), f"must be 0..{MAX_SCALE}")
            precision = None
        pricing: Pricing | None
        if "model" in obj:
            for key in sorted(_TIME_FIELDS & set(obj)):
                self.problem(
                    _at(path, key), "a rate has either a 'model' or time increments, not both"
                )
            pricing = self.model(obj.get("model"), _at(path, "model"))
        else:
            pricing = self.time_tariff(obj, path)
        if not rate_id or not service or pricing is None:
            return None
        return UsageRate(
            rate_id, service, pricing, destination, min_cost, max_cost, rounding, precision
        )

    def time_tariff(self, obj: Mapping[str, object], path: str) -> TimeTariff | None:
        first = self.integer(obj, "first_increment", path, minimum=1)
        step = self.integer(obj, "next_increment", path, minimum=1)
        connection, band_fees = self.connection_fees(obj, path)
        given = [key for key in ("prices", "per_minute", "unit_prices") if key in obj]
        for key in given[1:]:
            self.problem(
                _at(path, key),
                "give one of 'prices', 'per_minute' and 'unit_prices'",
            )
        if not given:
            self.problem(
                _at(path, "prices"),
                "is required (or 'per_minute', or 'rate_unit' with 'unit_prices')",
            )
        rate_unit = self.integer(obj, "rate_unit", path, minimum=1, required=False)
        if "rate_unit" in obj and "unit_prices" not in obj:
            self.problem(
                _at(path, "rate_unit"),
                "is the unit 'unit_prices' are for; give 'unit_prices' with it",
            )
        prices: dict[str, BandPrice] = {}
        kind = given[0] if given else None
        if kind == "per_minute":
            minutes = self.unit_price_table(obj, "per_minute", path, "a price per minute")
            if first is not None and step is not None:
                exact = {
                    band: (_per_increment(minute, first), _per_increment(minute, step))
                    for band, minute in minutes.items()
                }
                whole = {
                    band: BandPrice(a, n)
                    for band, (a, n) in exact.items()
                    if a is not None and n is not None
                }
                if len(whole) == len(exact):
                    prices = whole  # exact per increment: per-increment prices, as always
                else:  # 0.02 a minute charged per second: a price per 60 s rate unit
                    rate_unit = 60
                    prices = {b: BandPrice(m, m) for b, m in minutes.items()}
        elif kind == "unit_prices":
            if "rate_unit" not in obj:
                self.problem(
                    _at(path, "rate_unit"),
                    "is required with 'unit_prices' (seconds a price is for, e.g. 60)",
                )
            per_unit = self.unit_price_table(obj, "unit_prices", path, "a price per rate unit")
            prices = {b: BandPrice(price, price) for b, price in per_unit.items()}
        elif kind == "prices":
            table = obj.get("prices")
            here = _at(path, "prices")
            if not isinstance(table, Mapping) or not table:
                self.problem(
                    here, "must map band names (or '*') to {first, next} prices per increment"
                )
            else:
                for band, entry in table.items():
                    at = _at(here, str(band))
                    price = self.record(entry, at, frozenset({"first", "next"}))
                    if price is None:
                        continue
                    first_price = self.decimal(price, "first", at)
                    next_price = self.decimal(price, "next", at)
                    if first_price is not None and next_price is not None:
                        prices[str(band)] = BandPrice(first_price, next_price)
        for band, fee in band_fees.items():
            base = prices.get(band) or prices.get(ANY_BAND)
            if base is None:
                if prices:
                    self.problem(
                        _at(_at(path, "connection_fee"), band),
                        f"band {band!r} has no price (give it one, or a '*' price)",
                    )
                continue
            prices[band] = replace(base, connection_fee=fee)
        if first is None or step is None or connection is None or not prices:
            return None
        if "rate_unit" in obj and rate_unit is None:
            return None
        return TimeTariff(first, step, prices, connection, rate_unit)

    def connection_fees(
        self, obj: Mapping[str, object], path: str
    ) -> tuple[Decimal | None, dict[str, Decimal]]:
        """The connection fee, one amount or per band (``{peak: "0.10", "*": "0.05"}``)."""
        value = obj.get("connection_fee")
        if not isinstance(value, Mapping):
            fee = self.decimal(obj, "connection_fee", path, required=False, default=Decimal(0))
            return fee, {}
        here = _at(path, "connection_fee")
        if not value:
            self.problem(here, "must be an amount or map band names (or '*') to amounts")
            return None, {}
        fees: dict[str, Decimal] = {}
        for band in value:
            fee = self.decimal(value, str(band), here)
            if fee is not None:
                fees[str(band)] = fee
        return fees.pop(ANY_BAND, Decimal(0)), fees

    def unit_price_table(
        self, obj: Mapping[str, object], key: str, path: str, what: str
    ) -> dict[str, Decimal]:
        table = obj.get(key)
        here = _at(path, key)
        if not isinstance(table, Mapping) or not table:
            self.problem(here, f"must map band names (or '*') to {what}")
            return {}
        prices: dict[str, Decimal] = {}
        for band in table:
            price = self.decimal(table, str(band), here)
            if price is not None:
                prices[str(band)] = price
        return prices

    def model(self, value: object, path: str) -> UsageModel | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"must be a mapping with a 'kind', got {_kind(value)}")
            return None
        kind = self.choice(value, "kind", path, _ModelKind)
        if kind is None:
            return None
        obj = self.record(value, path, _MODEL_FIELDS[kind])
        if obj is None:
            return None
        if kind is _ModelKind.PERCENTAGE:
            percent = self.decimal(obj, "percent", path)
            fixed = self.decimal(obj, "fixed_fee", path, required=False, default=Decimal(0))
            if percent is None or fixed is None:
                return None
            return Percentage(percent, fixed)
        if kind is _ModelKind.PACKAGE:
            size = self.integer(obj, "size", path, minimum=1)
            price = self.decimal(obj, "price", path)
            if size is None or price is None:
                return None
            return Package(size, price)
        unit_size = self.integer(obj, "unit_size", path, minimum=1, required=False, default=1)
        if unit_size is None:
            return None
        if kind is _ModelKind.PER_UNIT:
            price = self.decimal(obj, "price", path)
            increment = self.integer(obj, "increment", path, minimum=1, required=False)
            if price is None or ("increment" in obj and increment is None):
                return None
            return PerUnit(price, unit_size, increment)
        before = len(self.problems)
        tiers = self.each(obj, "tiers", path, self.tier)
        if len(self.problems) > before:
            return None
        if not tiers:
            self.problem(_at(path, "tiers"), "at least one tier is needed")
            return None
        low = 0
        for index, tier in enumerate(tiers):
            here = _at(_at(path, "tiers"), index)
            if tier.up_to is None and index != len(tiers) - 1:
                self.problem(_at(here, "up_to"), "only the last tier may be open-ended")
                return None
            if tier.up_to is not None and tier.up_to <= low:
                self.problem(_at(here, "up_to"), f"must be above the previous tier's {low}")
                return None
            low = tier.up_to or low
        if kind is _ModelKind.GRADUATED:
            return GraduatedTiers(tiers, unit_size)
        return VolumeTiers(tiers, unit_size)

    def tier(self, value: object, path: str) -> Tier | None:
        obj = self.record(value, path, frozenset({"up_to", "unit_price", "flat_fee"}))
        if obj is None:
            return None
        up_to = self.integer(obj, "up_to", path, minimum=1, required=False)
        price = self.decimal(obj, "unit_price", path)
        flat = self.decimal(obj, "flat_fee", path, required=False, default=Decimal(0))
        if price is None or flat is None or ("up_to" in obj and up_to is None):
            return None
        return Tier(up_to, price, flat)


class _ModelKind(StrEnum):
    PER_UNIT = "per_unit"
    PACKAGE = "package"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PERCENTAGE = "percentage"


_RATE_FIELDS: Final = frozenset(
    {
        "id",
        "service",
        "destination",
        "min_cost",
        "max_cost",
        "rounding",
        "precision",
        "model",
    }
)
_TIME_FIELDS: Final = frozenset(
    {
        "first_increment",
        "next_increment",
        "connection_fee",
        "prices",
        "per_minute",
        "rate_unit",
        "unit_prices",
    }
)
_MODEL_FIELDS: Final = {
    _ModelKind.PER_UNIT: frozenset({"kind", "price", "unit_size", "increment"}),
    _ModelKind.PACKAGE: frozenset({"kind", "size", "price"}),
    _ModelKind.GRADUATED: frozenset({"kind", "tiers", "unit_size"}),
    _ModelKind.VOLUME: frozenset({"kind", "tiers", "unit_size"}),
    _ModelKind.PERCENTAGE: frozenset({"kind", "percent", "fixed_fee"}),
}


def _per_increment(per_minute: Decimal, seconds: int) -> Decimal | None:
    """The price of a ``seconds`` increment at ``per_minute``, if exact to nine places."""
    exact = Fraction(per_minute) * seconds / 60
    scaled = exact * NANOS_PER_UNIT
    if scaled.denominator != 1:
        return None
    return plain(Decimal(scaled.numerator).scaleb(-MAX_SCALE))


__all__ = ["RateReader"]
