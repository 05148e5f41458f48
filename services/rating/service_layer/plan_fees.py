"""Plan fees priced for invoicing (RAT-3) and the VAT rate of services (RAT-5).

Invoicing bills recurring and one-time fees; pricing them stays here: the
plan version in force, the plan's discounts, the customer's or group's price
package and the region's taxes are rating's. A fee is priced for one whole
cycle (invoicing prorates by days) and answered as a net amount with the sum
of the tax rates of its service, which is what an EN 16931 invoice line needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.common.money import Money
from services.rating.domain.charge_models import OneTimeFee
from services.rating.domain.errors import UnknownTaxRegion
from services.rating.domain.timebands import epoch_seconds
from services.rating.service_layer.tariffs import TariffCache


@dataclass(frozen=True)
class PricedFee:
    plan_code: str
    fee_code: str
    name: str
    service: str
    timing: str
    net: Money
    tax_category: str
    tax_rate: Decimal


@dataclass(frozen=True)
class PlanFees:
    fees: list[PricedFee]
    tax_rates: dict[str, tuple[str, Decimal]]
    unknown_plan_codes: list[str]


def tax_rate(
    tariffs: TariffCache, tax_region: str, service: str, at: datetime
) -> tuple[str, Decimal]:
    catalog = tariffs.current().engine.catalog
    region = next((r for r in catalog.tax_regions if r.code == tax_region), None)
    if region is None:
        raise UnknownTaxRegion(f"no tax region {tax_region!r}")
    rate = sum((rule.percent for rule in region.rules_for(service, epoch_seconds(at))), Decimal(0))
    if rate > 0:
        return "S", rate
    return region.vat_category or "Z", rate


def price_plan_fees(
    tariffs: TariffCache,
    *,
    account_id: str,
    customer_id: str,
    group: str,
    tax_region: str,
    plan_codes: list[str],
    services: list[str],
    at: datetime,
) -> PlanFees:
    engine = tariffs.current().engine
    catalog = engine.catalog
    instant = epoch_seconds(at)
    fees: list[PricedFee] = []
    unknown: list[str] = []
    for code in plan_codes:
        plan = catalog.plan(code)
        version = None
        if plan is not None:
            version = next((v for v in plan.versions if v.window[0] <= instant < v.window[1]), None)
        if plan is None or version is None:
            unknown.append(code)
            continue
        for fee in version.fees:
            charge = engine.price_fee(
                code,
                fee.code,
                at,
                tax_region,
                account_id=account_id,
                customer_id=customer_id,
                group=group,
            )
            service = fee.service or fee.code
            category, rate = tax_rate(tariffs, tax_region, service, at)
            fees.append(
                PricedFee(
                    plan_code=code,
                    fee_code=fee.code,
                    name=fee.name or fee.code,
                    service=service,
                    timing="one_time" if isinstance(fee, OneTimeFee) else fee.timing.value,
                    net=charge.net_money,
                    tax_category=category,
                    tax_rate=rate,
                )
            )
    rates = {service: tax_rate(tariffs, tax_region, service, at) for service in services}
    return PlanFees(fees, rates, unknown)
