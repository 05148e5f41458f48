"""Pricing questions that store nothing: rate events, quote N units, units for an amount (RAT-8).

Charging asks these in real time, so they read the account view once per call
(one query for a whole batch) and price against the compiled tariff in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.common.errors import ReckonError
from services.rating.domain.engine import AmountBasis, RatedCharge
from services.rating.service_layer.pricing import (
    Subscriber,
    UsageInput,
    check_unit,
    engine_event,
    explanation,
    plan_for,
    rate_usage,
    subscriber,
)
from services.rating.service_layer.tariffs import Tariff, TariffCache
from services.rating.service_layer.unit_of_work import RatingUnitOfWork

UowFactory = Callable[[], RatingUnitOfWork]


@dataclass(frozen=True)
class PricedUsage:
    """A charge and its breakdown (the stored and wire form of the explanation)."""

    charge: RatedCharge
    explained: dict[str, Any]
    unit: str


@dataclass(frozen=True)
class PricingFailure:
    reason: str
    message: str
    field: str = ""


def _explain(
    tariff: Tariff, account: Subscriber, usage: UsageInput, charge: RatedCharge
) -> PricedUsage:
    unit = tariff.units[usage.service].value if usage.service in tariff.units else ""
    explained = explanation(charge, tariff, account, usage.destination, unit)
    return PricedUsage(charge, explained, unit)


def _account(uow_factory: UowFactory, account_id: str) -> Subscriber | None:
    with uow_factory() as uow:
        return subscriber(uow.accounts.get(account_id))


def rate_event(uow_factory: UowFactory, tariffs: TariffCache, usage: UsageInput) -> PricedUsage:
    tariff = tariffs.current()
    account = _account(uow_factory, usage.account_id)
    charge, known, _ = rate_usage(tariff, account, usage)
    return _explain(tariff, known, usage, charge)


def rate_events(
    uow_factory: UowFactory, tariffs: TariffCache, batch: Sequence[UsageInput]
) -> list[PricedUsage | PricingFailure]:
    tariff = tariffs.current()
    with uow_factory() as uow:
        accounts = uow.accounts.get_many({usage.account_id for usage in batch})
    results: list[PricedUsage | PricingFailure] = []
    for usage in batch:
        try:
            charge, known, _ = rate_usage(tariff, subscriber(accounts.get(usage.account_id)), usage)
        except ReckonError as exc:
            field = getattr(exc, "violations", None)
            results.append(PricingFailure(exc.reason, exc.message, field[0].field if field else ""))
            continue
        results.append(_explain(tariff, known, usage, charge))
    return results


def units_for_amount(
    uow_factory: UowFactory,
    tariffs: TariffCache,
    usage: UsageInput,
    amount: Decimal,
    currency: str,
) -> tuple[int, PricedUsage]:
    """The most units (up to ``usage.quantity``) whose gross price is within ``amount``."""
    tariff = tariffs.current()
    account, plan = plan_for(
        _account(uow_factory, usage.account_id), usage.account_id, usage.event_time
    )
    check_unit(tariff, usage)
    event = engine_event(usage, account, plan)
    plan_currency = tariff.catalog.plan(plan)
    if plan_currency is not None and plan_currency.currency != currency:
        from services.common.errors import InvalidArgument

        raise InvalidArgument.field(
            "amount.currency_code",
            f"plan {plan} prices in {plan_currency.currency}, not {currency}",
        )
    found = tariff.engine.units_for_amount(event, amount, AmountBasis.GROSS)
    return found.units, _explain(tariff, account, usage, found.charge)
