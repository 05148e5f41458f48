"""Pricing questions that store nothing: rate events, quote N units, units for an amount (RAT-8).

Charging asks these in real time, so they read the account view once per call
(one query for a whole batch) and price against the compiled tariff in memory.

A question is priced where the account stands in its bill cycle, exactly as
rating the same usage now would charge it: the included allowance left, the
tier or package position reached by the cycle's usage so far and the uses left
of count-limited discounts are read from the stored counters (without a lock:
nothing is drawn). Events of one batch see each other's draws, in order, as in
an import; nothing of it is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.common.errors import ReckonError
from services.rating.domain.engine import AmountBasis, RatedCharge
from services.rating.service_layer.cycles import CycleCounters
from services.rating.service_layer.pricing import (
    Subscriber,
    UsageInput,
    check_unit,
    counter_cycles,
    engine_event,
    explanation,
    find_accounts,
    place_in_cycle,
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
    # The error itself, for the google.rpc.Status of a streamed answer.
    error: ReckonError | None = None


def _explain(
    tariff: Tariff, account: Subscriber, usage: UsageInput, charge: RatedCharge
) -> PricedUsage:
    unit = tariff.units[usage.service].value if usage.service in tariff.units else ""
    explained = explanation(charge, tariff, account, usage.destination, unit)
    return PricedUsage(charge, explained, unit)


def _account(
    uow_factory: UowFactory, tariff: Tariff, usage: UsageInput
) -> tuple[Subscriber | None, CycleCounters | None]:
    """The account and, when the tariff needs them, its counters at the usage's time."""
    with uow_factory() as uow:
        # An account id, ``ext:<ref>`` or a service identifier (issue 9 item 12).
        account = subscriber(find_accounts(uow, {usage.account_id}).get(usage.account_id))
        if account is None or not tariff.needs_counters:
            return account, None
        counters = CycleCounters()
        counters.load(uow, counter_cycles(tariff, account, usage.event_time))
        return account, counters


def rate_event(uow_factory: UowFactory, tariffs: TariffCache, usage: UsageInput) -> PricedUsage:
    tariff = tariffs.current()
    account, counters = _account(uow_factory, tariff, usage)
    charge, known, _ = rate_usage(tariff, account, usage, counters)
    return _explain(tariff, known, usage, charge)


def rate_events(
    uow_factory: UowFactory, tariffs: TariffCache, batch: Sequence[UsageInput]
) -> list[PricedUsage | PricingFailure]:
    tariff = tariffs.current()
    counters = CycleCounters()
    with uow_factory() as uow:
        accounts = find_accounts(uow, {usage.account_id for usage in batch})
        subscribers = {code: subscriber(found) for code, found in accounts.items()}
        if tariff.needs_counters:
            cycles: set[tuple[str, str]] = set()
            for usage in batch:
                known = subscribers.get(usage.account_id)
                if known is not None:
                    cycles |= counter_cycles(tariff, known, usage.event_time)
            counters.load(uow, cycles)
    results: list[PricedUsage | PricingFailure] = []
    for usage in batch:
        try:
            charge, known, _ = rate_usage(
                tariff, subscribers.get(usage.account_id), usage, counters
            )
        except ReckonError as exc:
            field = getattr(exc, "violations", None)
            results.append(
                PricingFailure(exc.reason, exc.message, field[0].field if field else "", exc)
            )
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
    stored, counters = _account(uow_factory, tariff, usage)
    account, plan = plan_for(stored, usage.account_id, usage.event_time)
    check_unit(tariff, usage)
    event = engine_event(usage, account, plan)
    if counters is not None:
        place_in_cycle(tariff, account, plan, usage, event, counters)
    plan_currency = tariff.catalog.plan(plan)
    if plan_currency is not None and plan_currency.currency != currency:
        from services.common.errors import InvalidArgument

        raise InvalidArgument.field(
            "amount.currency_code",
            f"plan {plan} prices in {plan_currency.currency}, not {currency}",
        )
    found = tariff.engine.units_for_amount(event, amount, AmountBasis.GROSS)
    return found.units, _explain(tariff, account, usage, found.charge)
