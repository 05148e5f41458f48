"""The declarative catalog document: a plain dict (parsed YAML or JSON) to a ``Catalog``.

Operators keep the catalog in git and apply it with ``reckon catalog apply
FILE``; ``reckon catalog check FILE`` reports every problem at once. This module
is the pure part: ``parse_catalog`` validates a document and builds the catalog,
and every problem is a ``FieldViolation`` whose field is a path into the
document (``plans[2].versions[0].rates[0].first_increment``), so the CLI can map
it to a line of the file.

Amounts must be exact: strings (``"0.10"``), integers or Decimals. Floats are
refused, because YAML and JSON parsers turn ``0.10`` into a binary float; load
YAML with floats as strings (or JSON with ``parse_float=Decimal``). Unknown keys
are refused too, so a typo never silently drops a price.

Shape (every list may be empty or absent)::

    numbering: {country_code: "31", international_prefix: "00", national_prefix: "0"}
    products: [{code: voice, unit: second, name: Voice calls}]
    destinations: [{name: NL Mobile, prefixes: ["316", "3197"]}]
    calendars: [{code: nl, holidays: [{date: 2026-12-25, band: weekend}]}]
    time_bands:
      - code: standard
        default_band: offpeak
        calendar: nl
        bands: [{name: peak, days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}]
    tax_regions:
      - code: NL
        rounding: half_up
        taxes: [{code: VAT, name: BTW, percent: "21", inclusive: false, services: [voice]}]
    discounts: [{code: WELCOME, kind: percent, value: "10", max_uses: 3, uses_per: account,
                 valid_to: ...}]
    referral_rewards: [{code: REFER, points: 500, unit: points}]
    plans:
      - code: conf-basic
        currency: EUR
        versions:
          - version: 1
            valid_from: 2026-01-01T00:00:00Z
            time_bands: standard
            discounts: [WELCOME]
            allowances: [{code: incl, service: voice, units: 6000, destinations: [NL Mobile]}]
            fees: [{code: monthly, kind: recurring, amount: "9.95", timing: in_advance}]
            rates:
              - id: nl-mobile
                service: voice
                destination: NL Mobile
                connection_fee: "0.05"
                first_increment: 60
                next_increment: 60
                prices: {peak: {first: "0.10", next: "0.10"}, "*": {first: "0.05", next: "0.05"}}
                # or per_minute: {peak: "0.10", "*": "0.05"} when the division is exact
                min_cost: "0.10"
                max_cost: "5.00"
                rounding: up
                precision: 2
              - id: data
                service: data
                model: {kind: graduated, unit_size: 1000000,
                        tiers: [{up_to: 1000, unit_price: "0"}, {unit_price: "0.01"}]}
    packages:
      - code: acme
        plan: conf-basic
        customer: cust-42        # or group: reseller-x
        versions: [{version: 1, valid_from: 2026-02-01T00:00:00Z, rates: [...]}]

Model kinds: ``per_unit`` (price, unit_size), ``package`` (size, price),
``graduated`` and ``volume`` (tiers of up_to, unit_price, flat_fee; unit_size),
``percentage`` (percent, fixed_fee). A date without a time means 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Final, TypeVar

from services.common.errors import FieldViolation
from services.common.money import MAX_SCALE, Rounding, is_known_currency

from .amounts import NANOS_PER_UNIT, decimal_places, plain
from .catalog import (
    Allowance,
    Catalog,
    PackageVersion,
    PlanVersion,
    PricePackage,
    PricePlan,
    Pricing,
    Product,
    UsageRate,
    UsageUnit,
    validate_catalog,
)
from .charge_models import (
    Fee,
    FeeTiming,
    GraduatedTiers,
    OneTimeFee,
    Package,
    Percentage,
    PerUnit,
    RecurringFee,
    Tier,
    UsageModel,
    VolumeTiers,
)
from .destinations import (
    DEFAULT_NUMBERING,
    DestinationTable,
    NumberingPlan,
    name_problem,
    prefix_problem,
)
from .discounts import Discount, DiscountKind, ReferralReward, UsesPer
from .errors import InvalidCatalog
from .tariffs import BandPrice, TimeTariff
from .taxes import TaxRegion, TaxRule
from .timebands import WEEKDAY_NAMES, BandSchedule, HolidayCalendar, TimeBand

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")

MAX_CODE_LENGTH: Final = 100
_ROUNDING_NAMES: Final = {
    **{r.value.lower(): r for r in Rounding},
    **{r.value.removeprefix("ROUND_").lower(): r for r in Rounding},
}
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


def parse_catalog(
    document: Mapping[str, object], *, destinations: DestinationTable | None = None
) -> Catalog:
    """The catalog a document describes, or ``InvalidCatalog`` listing every problem.

    ``destinations`` is a prefix table loaded separately (a large CSV through
    ``load_destination_rows``); the document's own destinations are added to it.
    """
    reader = _Reader()
    catalog = reader.catalog(document, destinations or DestinationTable.empty())
    if reader.problems:
        raise InvalidCatalog(reader.problems)
    assert catalog is not None
    problems = validate_catalog(catalog)
    if problems:
        raise InvalidCatalog(problems)
    return catalog


def check_catalog(
    document: Mapping[str, object], *, destinations: DestinationTable | None = None
) -> list[FieldViolation]:
    """Every problem of a document (empty when it would apply cleanly)."""
    try:
        parse_catalog(document, destinations=destinations)
    except InvalidCatalog as error:
        return list(error.violations)
    return []


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Reader:
    """Reads a document field by field, collecting problems instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[FieldViolation] = []

    def problem(self, path: str, description: str) -> None:
        self.problems.append(FieldViolation(path, description))

    # -- shapes -------------------------------------------------------------------

    def record(
        self, value: object, path: str, allowed: frozenset[str]
    ) -> Mapping[str, object] | None:
        """``value`` as a mapping with only ``allowed`` keys (unknown keys are reported)."""
        if not isinstance(value, Mapping):
            self.problem(path or "document", f"must be a mapping, got {_kind(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.problem(
                    _at(path, str(key)),
                    f"unknown field (expected one of {', '.join(sorted(allowed))})",
                )
        return value

    def each(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        build: Callable[[object, str], T | None],
    ) -> tuple[T, ...]:
        """Build every element of the list ``parent[key]``; absent means empty."""
        value = parent.get(key)
        if value is None:
            return ()
        here = _at(path, key)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            self.problem(here, f"must be a list, got {_kind(value)}")
            return ()
        built = [build(item, _at(here, index)) for index, item in enumerate(value)]
        return tuple(item for item in built if item is not None)

    # -- scalars ------------------------------------------------------------------

    def text(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        required: bool = True,
        default: str = "",
    ) -> str:
        value = obj.get(key)
        here = _at(path, key)
        if value is None or value == "":
            if required:
                self.problem(here, "is required")
            return default
        if not isinstance(value, str):
            self.problem(here, f"must be text, got {_kind(value)}")
            return default
        if len(value) > MAX_CODE_LENGTH and key != "name":
            self.problem(here, f"must be at most {MAX_CODE_LENGTH} characters")
        return value

    def optional_text(self, obj: Mapping[str, object], key: str, path: str) -> str | None:
        return self.text(obj, key, path, required=False) or None

    def texts(self, obj: Mapping[str, object], key: str, path: str) -> tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        here = _at(path, key)
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.problem(here, f"must be a list of text, got {_kind(value)}")
            return ()
        result: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item:
                result.append(item)
            else:
                self.problem(_at(here, index), f"must be text, got {_kind(item)}")
        return tuple(result)

    def integer(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        minimum: int = 0,
        required: bool = True,
        default: int | None = None,
    ) -> int | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(here, f"must be a whole number, got {_kind(value)}")
            return default
        if value < minimum:
            self.problem(here, f"must be at least {minimum}")
            return default
        return value

    def decimal(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        required: bool = True,
        default: Decimal | None = None,
        negative: bool = False,
    ) -> Decimal | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return default
        if isinstance(value, bool | float):
            self.problem(
                here,
                f'{value!r} must be written exactly: a string like "0.10" '
                f"or an integer (floats are not exact)",
            )
            return default
        if not isinstance(value, str | int | Decimal):
            self.problem(here, f"must be a decimal amount, got {_kind(value)}")
            return default
        try:
            result = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            self.problem(here, f"{str(value)[:40]!r} is not a decimal number")
            return default
        if not result.is_finite():
            self.problem(here, "must be a finite number")
            return default
        if result < 0 and not negative:
            self.problem(here, "must not be negative")
            return default
        if decimal_places(result) > MAX_SCALE:
            self.problem(here, f"has more than {MAX_SCALE} decimal places")
            return default
        if abs(result) >= 10**18:
            self.problem(here, "is too large")
            return default
        return result

    def boolean(self, obj: Mapping[str, object], key: str, path: str, default: bool) -> bool:
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(_at(path, key), f"must be true or false, got {_kind(value)}")
            return default
        return value

    def choice(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        kind: type[E],
        default: E | None = None,
    ) -> E | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if default is None:
                self.problem(here, "is required")
            return default
        if isinstance(value, str):
            for member in kind:
                if value.lower() in (member.value.lower(), member.name.lower()):
                    return member
        self.problem(here, f"must be one of {', '.join(m.value for m in kind)}")
        return default

    def rounding(self, obj: Mapping[str, object], path: str, default: Rounding) -> Rounding:
        value = obj.get("rounding")
        if value is None:
            return default
        found = _ROUNDING_NAMES.get(value.lower()) if isinstance(value, str) else None
        if found is None:
            self.problem(
                _at(path, "rounding"), "must be one of half_even, half_up, up, down, ceiling, floor"
            )
            return default
        return found

    def instant(
        self, obj: Mapping[str, object], key: str, path: str, *, required: bool = False
    ) -> datetime | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                value = (
                    datetime.fromisoformat(text)
                    if "T" in text or " " in text
                    else date.fromisoformat(text)
                )
            except ValueError:
                self.problem(here, f"{text[:40]!r} is not an ISO 8601 date or date-time")
                return None
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                self.problem(here, "needs a UTC offset (for example 2026-01-01T00:00:00Z)")
                return None
            return value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        self.problem(here, f"must be a date or date-time, got {_kind(value)}")
        return None

    def day(self, obj: Mapping[str, object], key: str, path: str) -> date | None:
        value = obj.get(key)
        here = _at(path, key)
        if isinstance(value, datetime):
            self.problem(here, "must be a date without a time")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(here, "must be a date (YYYY-MM-DD)")
        return None

    def clock(
        self, obj: Mapping[str, object], key: str, path: str, *, end_of_day: bool
    ) -> time | None:
        value = obj.get(key)
        here = _at(path, key)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 08:00 unquoted as the sexagesimal number 480 (minutes).
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str):
            self.problem(here, 'must be a time of day like "08:00"')
            return None
        if end_of_day and value in ("24:00", "24:00:00"):
            return time(0)
        try:
            return time.fromisoformat(value)
        except ValueError:
            self.problem(here, f'{value[:20]!r} is not a time of day like "08:00"')
            return None

    # -- catalog ------------------------------------------------------------------

    def catalog(self, document: Mapping[str, object], table: DestinationTable) -> Catalog | None:
        doc = self.record(document, "", _CATALOG_FIELDS)
        if doc is None:
            return None
        numbering = self.numbering(doc.get("numbering"), "numbering")
        destinations = self.destinations(doc, table)
        products = self.each(doc, "products", "", self.product)
        calendars = self.each(doc, "calendars", "", self.calendar)
        schedules = self.each(doc, "time_bands", "", self.schedule)
        regions = self.each(doc, "tax_regions", "", self.tax_region)
        discounts = self.each(doc, "discounts", "", self.discount)
        rewards = self.each(doc, "referral_rewards", "", self.reward)
        plans = self.each(doc, "plans", "", self.plan)
        packages = self.each(doc, "packages", "", self.package)
        return Catalog(
            products,
            destinations,
            calendars,
            schedules,
            regions,
            discounts,
            rewards,
            plans,
            packages,
            numbering,
        )

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
        obj = self.record(value, path, frozenset({"code", "name", "rounding", "taxes"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        rounding = self.rounding(obj, path, Rounding.HALF_UP)
        taxes = self.each(obj, "taxes", path, self.tax)
        return TaxRegion(code, taxes, rounding, name) if code else None

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

    def window(
        self, obj: Mapping[str, object], path: str
    ) -> tuple[datetime | None, datetime | None]:
        valid_from = self.instant(obj, "valid_from", path)
        valid_to = self.instant(obj, "valid_to", path)
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            self.problem(_at(path, "valid_to"), "must be after valid_from")
        return valid_from, valid_to

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

    # -- plans and packages -------------------------------------------------------

    def plan(self, value: object, path: str) -> PricePlan | None:
        obj = self.record(value, path, frozenset({"code", "name", "currency", "versions"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        currency = self.text(obj, "currency", path)
        if currency and not is_known_currency(currency):
            self.problem(_at(path, "currency"), f"{currency!r} is not an ISO 4217 currency")
            currency = ""
        versions = self.each(obj, "versions", path, self.plan_version)
        if "versions" not in obj:
            self.problem(_at(path, "versions"), "a plan needs at least one version")
        if not code or not currency:
            return None
        return PricePlan(code, currency, versions, name)

    def plan_version(self, value: object, path: str) -> PlanVersion | None:
        obj = self.record(
            value,
            path,
            frozenset(
                {
                    "version",
                    "valid_from",
                    "valid_to",
                    "rates",
                    "time_bands",
                    "allowances",
                    "fees",
                    "discounts",
                }
            ),
        )
        if obj is None:
            return None
        number = self.integer(obj, "version", path, minimum=1)
        valid_from = self.instant(obj, "valid_from", path, required=True)
        valid_to = self.instant(obj, "valid_to", path)
        rates = self.each(obj, "rates", path, self.rate)
        time_bands = self.optional_text(obj, "time_bands", path)
        allowances = self.each(obj, "allowances", path, self.allowance)
        fees: tuple[Fee, ...] = self.each(obj, "fees", path, self.fee)
        discounts = self.texts(obj, "discounts", path)
        if number is None or valid_from is None:
            return None
        if valid_to is not None and valid_to <= valid_from:
            self.problem(_at(path, "valid_to"), "must be after valid_from")
            return None
        return PlanVersion(
            number, valid_from, valid_to, rates, time_bands, allowances, fees, discounts
        )

    def package(self, value: object, path: str) -> PricePackage | None:
        obj = self.record(
            value, path, frozenset({"code", "name", "plan", "customer", "group", "versions"})
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        plan = self.text(obj, "plan", path)
        customer = self.optional_text(obj, "customer", path)
        group = self.optional_text(obj, "group", path)
        if (customer is None) == (group is None):
            self.problem(path, "set exactly one of 'customer' and 'group'")
        versions = self.each(obj, "versions", path, self.package_version)
        if not code or not plan:
            return None
        return PricePackage(code, plan, versions, customer, group, name)

    def package_version(self, value: object, path: str) -> PackageVersion | None:
        obj = self.record(
            value, path, frozenset({"version", "valid_from", "valid_to", "rates", "discounts"})
        )
        if obj is None:
            return None
        number = self.integer(obj, "version", path, minimum=1)
        valid_from = self.instant(obj, "valid_from", path, required=True)
        valid_to = self.instant(obj, "valid_to", path)
        rates = self.each(obj, "rates", path, self.rate)
        discounts = self.texts(obj, "discounts", path)
        if number is None or valid_from is None:
            return None
        if valid_to is not None and valid_to <= valid_from:
            self.problem(_at(path, "valid_to"), "must be after valid_from")
            return None
        return PackageVersion(number, valid_from, valid_to, rates, discounts)

    def allowance(self, value: object, path: str) -> Allowance | None:
        obj = self.record(value, path, frozenset({"code", "service", "units", "destinations"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        service = self.text(obj, "service", path)
        units = self.integer(obj, "units", path, minimum=1)
        destinations = frozenset(self.texts(obj, "destinations", path))
        if not code or not service or units is None:
            return None
        return Allowance(code, service, units, destinations)

    def fee(self, value: object, path: str) -> Fee | None:
        obj = self.record(
            value, path, frozenset({"code", "name", "kind", "amount", "timing", "service"})
        )
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        name = self.text(obj, "name", path, required=False)
        kind = self.choice(obj, "kind", path, _FeeKind)
        amount = self.decimal(obj, "amount", path)
        service = self.text(obj, "service", path, required=False)
        timing = self.choice(obj, "timing", path, FeeTiming, FeeTiming.IN_ADVANCE)
        if not code or kind is None or amount is None or timing is None:
            return None
        if kind is _FeeKind.ONE_TIME:
            if "timing" in obj:
                self.problem(_at(path, "timing"), "only a recurring fee has a timing")
            return OneTimeFee(code, amount, name, service)
        return RecurringFee(code, amount, timing, name, service)

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
        connection = self.decimal(obj, "connection_fee", path, required=False, default=Decimal(0))
        prices: dict[str, BandPrice] = {}
        if "prices" in obj and "per_minute" in obj:
            self.problem(_at(path, "per_minute"), "give 'prices' or 'per_minute', not both")
        elif "per_minute" in obj:
            per_minute = obj["per_minute"]
            here = _at(path, "per_minute")
            if not isinstance(per_minute, Mapping) or not per_minute:
                self.problem(here, "must map band names (or '*') to a price per minute")
            elif first is not None and step is not None:
                for band, raw in per_minute.items():
                    minute = self.decimal(per_minute, str(band), here)
                    if minute is None:
                        continue
                    first_price = _per_increment(minute, first)
                    next_price = _per_increment(minute, step)
                    if first_price is None or next_price is None:
                        self.problem(
                            _at(here, str(band)),
                            f"{raw} a minute is not exact to {MAX_SCALE} decimals per "
                            f"{first}/{step}-second increment; give 'prices' per "
                            f"increment",
                        )
                        continue
                    prices[str(band)] = BandPrice(first_price, next_price)
        else:
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
        if first is None or step is None or connection is None or not prices:
            return None
        return TimeTariff(first, step, prices, connection)

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
            return PerUnit(price, unit_size) if price is not None else None
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


class _FeeKind(StrEnum):
    RECURRING = "recurring"
    ONE_TIME = "one_time"


class _ModelKind(StrEnum):
    PER_UNIT = "per_unit"
    PACKAGE = "package"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PERCENTAGE = "percentage"


_CATALOG_FIELDS: Final = frozenset(
    {
        "numbering",
        "products",
        "destinations",
        "calendars",
        "time_bands",
        "tax_regions",
        "discounts",
        "referral_rewards",
        "plans",
        "packages",
    }
)
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
    }
)
_MODEL_FIELDS: Final = {
    _ModelKind.PER_UNIT: frozenset({"kind", "price", "unit_size"}),
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


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


__all__ = ["check_catalog", "parse_catalog"]
