"""Price plans and price packages in the catalog document: versions, allowances, fees
and the rates they hold."""

from __future__ import annotations

from enum import StrEnum

from services.common.codes import plan_code_problem
from services.common.money import is_known_currency

from .catalog import Allowance, PackageVersion, PlanVersion, PricePackage, PricePlan
from .charge_models import Fee, FeeTiming, OneTimeFee, RecurringFee
from .document_fields import _at
from .document_rates import RateReader


class PlanReader(RateReader):
    """Reads plans and packages, each version with its rates."""

    def plan(self, value: object, path: str) -> PricePlan | None:
        obj = self.record(value, path, frozenset({"code", "name", "currency", "versions"}))
        if obj is None:
            return None
        code = self.text(obj, "code", path)
        if code and (why := plan_code_problem(code)):
            # Accounts subscribes by this code: refuse what it would refuse (issue 9 item 10).
            self.problem(_at(path, "code"), f"{code[:40]!r} {why}")
            code = ""
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


class _FeeKind(StrEnum):
    RECURRING = "recurring"
    ONE_TIME = "one_time"


__all__ = ["PlanReader"]
