"""Catalog-wide parts of the catalog document: numbering, destinations, products,
holiday calendars, time-band schedules, tax regions, discounts and referral rewards."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from typing import Final

from services.common.money import Rounding

from .catalog import Product, UsageUnit
from .destinations import (
    DEFAULT_NUMBERING,
    DestinationTable,
    NumberingPlan,
    name_problem,
    prefix_problem,
)
from .discounts import Discount, DiscountKind, ReferralReward, UsesPer
from .document_fields import FieldReader, _at
from .taxes import ZERO_VAT_CATEGORIES, TaxRegion, TaxRule
from .timebands import WEEKDAY_NAMES, BandSchedule, HolidayCalendar, TimeBand

_FULL_DAY_NAMES: Final = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
# Day names a band may list, to the weekdays (Monday = 0) they stand for.
_DAYS: Final[dict[str, frozenset[int]]] = {
    **{name: frozenset({day}) for day, name in enumerate(WEEKDAY_NAMES)},
    **{name: frozenset({day}) for day, name in enumerate(_FULL_DAY_NAMES)},
    "weekdays": frozenset(range(5)),
    "weekend": frozenset({5, 6}),
    "all": frozenset(range(7)),
}


class ReferenceReader(FieldReader):
    """Reads the catalog-wide sections every plan refers to."""

    def numbering(self, value: object, path: str) -> NumberingPlan:
        if value is None:
            return DEFAULT_NUMBERING
        obj = self.record(
            value, path, frozenset({"country_code", "international_prefix", "national_prefix"})
        )
        if obj is None:
            return DEFAULT_NUMBERING
        parts = {}
        for key, default in (
            ("country_code", ""),
            ("international_prefix", "00"),
            ("national_prefix", "0"),
        ):
            text = self.text(obj, key, path, required=False, default=default)
            if text and not (text.isascii() and text.isdigit()):
                self.problem(_at(path, key), "must be digits")
            parts[key] = text
        return NumberingPlan(**parts)

    def destinations(self, doc: Mapping[str, object], table: DestinationTable) -> DestinationTable:
        by_prefix = dict(table.items())
        before = len(self.problems)

        def entry(value: object, path: str) -> None:
            obj = self.record(value, path, frozenset({"name", "prefixes"}))
            if obj is None:
                return None
            name = self.text(obj, "name", path)
            why = name_problem(name) if name else None
            if why:
                self.problem(_at(path, "name"), why)
            prefixes = self.texts(obj, "prefixes", path)
            if not prefixes:
                self.problem(_at(path, "prefixes"), "needs at least one prefix")
            for index, raw in enumerate(prefixes):
                prefix = raw.strip().removeprefix("+")
                why = prefix_problem(prefix)
                if why:
                    self.problem(_at(_at(path, "prefixes"), index), why)
                    continue
                owner = by_prefix.setdefault(prefix, name)
                if owner != name:
                    self.problem(
                        _at(_at(path, "prefixes"), index),
                        f"prefix {prefix} already belongs to {owner!r}",
                    )
            return None

        self.each(doc, "destinations", "", entry)
        if len(self.problems) > before:
            return table
        return DestinationTable(by_prefix)

    def product(self, value: object, path: str) -> Product | None:
        obj = self.record(value, path, frozenset({"code", "unit", "name"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        unit = self.choice(obj, "unit", path, UsageUnit)
        name = self.text(obj, "name", path, required=False)
        return Product(code, unit, name) if code and unit else None

    def calendar(self, value: object, path: str) -> HolidayCalendar | None:
        obj = self.record(value, path, frozenset({"code", "holidays"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        holidays: dict[date, str] = {}

        def holiday(item: object, here: str) -> None:
            entry = self.record(item, here, frozenset({"date", "band", "name"}))
            if entry is None:
                return None
            day = self.day(entry, "date", here)
            band = self.text(entry, "band", here)
            if day is not None and band:
                if day in holidays:
                    self.problem(_at(here, "date"), f"{day} is listed twice")
                holidays[day] = band
            return None

        self.each(obj, "holidays", path, holiday)
        return HolidayCalendar(code, holidays) if code else None

    def schedule(self, value: object, path: str) -> BandSchedule | None:
        obj = self.record(value, path, frozenset({"code", "default_band", "calendar", "bands"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        default_band = self.text(obj, "default_band", path)
        calendar = self.optional_text(obj, "calendar", path)
        bands = self.each(obj, "bands", path, self.band)
        if not code or not default_band:
            return None
        return BandSchedule(code, bands, default_band, calendar)

    def band(self, value: object, path: str) -> TimeBand | None:
        obj = self.record(value, path, frozenset({"name", "days", "from", "to"}))
        if obj is None:
            return None
        name = self.text(obj, "name", path)
        weekdays: set[int] = set()
        days = self.texts(obj, "days", path)
        if not days:
            self.problem(
                _at(path, "days"), "needs at least one day (mon..sun, weekdays, weekend, all)"
            )
        for index, day in enumerate(days):
            named = _DAYS.get(day.lower())
            if named is None:
                self.problem(
                    _at(_at(path, "days"), index),
                    f"{day[:20]!r} is not a day (mon..sun, weekdays, weekend, all)",
                )
                continue
            weekdays |= named
        start = self.clock(obj, "from", path, end_of_day=False)
        end = self.clock(obj, "to", path, end_of_day=True)
        if start is not None and end is not None and start == end and end != time(0):
            self.problem(_at(path, "to"), "must differ from 'from' (00:00-24:00 is a whole day)")
            return None
        if not name or start is None or end is None or not weekdays:
            return None
        return TimeBand(name, frozenset(weekdays), start, end)

    def tax_region(self, value: object, path: str) -> TaxRegion | None:
        obj = self.record(
            value, path, frozenset({"code", "name", "rounding", "taxes", "vat_category"})
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        rounding = self.rounding(obj, path, Rounding.HALF_UP)
        taxes = self.each(obj, "taxes", path, self.tax)
        category = self.text(obj, "vat_category", path, required=False).upper()
        if category and category not in ZERO_VAT_CATEGORIES:
            self.problem(
                _at(path, "vat_category"),
                f"must be one of {', '.join(sorted(ZERO_VAT_CATEGORIES))}",
            )
            category = ""
        return TaxRegion(code, taxes, rounding, name, category) if code else None

    def tax(self, value: object, path: str) -> TaxRule | None:
        obj = self.record(
            value,
            path,
            frozenset(
                {"code", "name", "percent", "inclusive", "services", "valid_from", "valid_to"}
            ),
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False, default=code)
        percent = self.decimal(obj, "percent", path)
        if percent is not None and percent >= 100:
            self.problem(_at(path, "percent"), "must be below 100")
            percent = None
        inclusive = self.boolean(obj, "inclusive", path, False)
        services = frozenset(self.texts(obj, "services", path))
        valid_from, valid_to = self.window(obj, path)
        if not code or percent is None:
            return None
        return TaxRule(code, name, percent, inclusive, services, valid_from, valid_to)

    def discount(self, value: object, path: str) -> Discount | None:
        obj = self.record(
            value,
            path,
            frozenset(
                {
                    "code",
                    "name",
                    "kind",
                    "value",
                    "services",
                    "valid_from",
                    "valid_to",
                    "max_uses",
                    "uses_per",
                    "rounding",
                }
            ),
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        kind = self.choice(obj, "kind", path, DiscountKind)
        amount = self.decimal(obj, "value", path)
        if kind is DiscountKind.PERCENT and amount is not None and amount > 100:
            self.problem(_at(path, "value"), "a percentage discount is at most 100")
            amount = None
        services = frozenset(self.texts(obj, "services", path))
        valid_from, valid_to = self.window(obj, path)
        max_uses = self.integer(obj, "max_uses", path, minimum=1, required=False)
        uses_per = self.choice(obj, "uses_per", path, UsesPer, UsesPer.ACCOUNT)
        if "uses_per" in obj and max_uses is None:
            self.problem(_at(path, "uses_per"), "counts uses of max_uses, which is not set")
        rounding = self.rounding(obj, path, Rounding.HALF_UP)
        if not code or kind is None or amount is None:
            return None
        return Discount(
            code,
            kind,
            amount,
            name,
            services,
            valid_from,
            valid_to,
            max_uses,
            rounding,
            uses_per or UsesPer.ACCOUNT,
        )

    def reward(self, value: object, path: str) -> ReferralReward | None:
        obj = self.record(
            value, path, frozenset({"code", "name", "points", "unit", "valid_from", "valid_to"})
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        points = self.integer(obj, "points", path, minimum=1)
        unit = self.text(obj, "unit", path, required=False, default="points")
        name = self.text(obj, "name", path, required=False)
        valid_from, valid_to = self.window(obj, path)
        if not code or points is None:
            return None
        return ReferralReward(code, points, unit, name, valid_from, valid_to)


__all__ = ["ReferenceReader"]
