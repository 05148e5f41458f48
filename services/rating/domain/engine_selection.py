"""Tariff selection: which plan version, package, rate, taxes and discounts apply.

``TariffSelection`` is the part of ``RatingEngine`` that resolves everything about
an event that does not depend on its quantity: the plan version in force, the
customer's (else the group's) package version, the rate of the longest matching
destination prefix, the tax set of the account's region, the discounts that
apply, the band timeline of the account's time zone and the allowance. It also
holds the lazily filled, bounded caches this needs (zones, timelines, schedules,
tax schedules).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from .destinations import NumberingPlan, longest_prefix, normalise_number
from .discounts import Discount
from .engine_compiled import _PackageVersion, _PlanVersion, _Resolved, _Versions
from .engine_events import MAX_CALL_SECONDS, MAX_QUANTITY, UsageEvent
from .errors import (
    InvalidEvent,
    NoTariff,
    PlanNotInForce,
    UnknownDiscount,
    UnknownPlan,
    UnknownTaxRegion,
    UnknownTimeZone,
)
from .taxes import TaxRegion, TaxSchedule, TaxSet
from .timebands import (
    BandSchedule,
    BandTimeline,
    CompiledSchedule,
    HolidayCalendar,
    ZoneOffsets,
    epoch_seconds,
)

# Events outside these years are data errors (and beyond what time zone data covers).
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST: Final = epoch_seconds(datetime(1900, 1, 1, tzinfo=UTC))
_LATEST: Final = epoch_seconds(datetime(2200, 1, 1, tzinfo=UTC))


class TariffSelection:
    """Resolution of an event's tariff; mixed into ``RatingEngine``, which sets the state."""

    _numbering: NumberingPlan
    _calendars: dict[str, HolidayCalendar]
    _schedules: dict[str, CompiledSchedule]
    _schedule_defs: dict[str, BandSchedule]
    _discounts: dict[str, Discount]
    _regions: dict[str, TaxRegion]
    _tax_schedules: dict[str, dict[str, TaxSchedule]]
    _zones: dict[str, ZoneOffsets]
    _timelines: dict[tuple[str | None, str], BandTimeline]
    _plans: dict[str, _Versions[_PlanVersion]]
    _packages: dict[
        str, tuple[dict[str, _Versions[_PackageVersion]], dict[str, _Versions[_PackageVersion]]]
    ]

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
