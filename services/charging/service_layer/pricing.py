"""In-memory tariffs: the ``Pricing`` port without the rating service.

Each service has one tariff: ``price`` per ``per_units`` units, with usage rounded
up to a multiple of ``increment`` (60/60 per-minute billing: ``per_units=60,
increment=60``). Prices are computed in integers of the scale charging keeps
money in (``domain.units``) and rounded up to a whole stored unit, so a price is
always an exact stored amount and ``price_of(units_for(a)) <= a``.
Used by tests and by ``CHARGING_TARIFFS`` when no rating service is wired in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.charging.domain.units import MAX_QUANTITY, scaled_money, unscaled_money
from services.charging.service_layer.ports import NotPriced
from services.common.money import Money

_REMEMBERED_PRICES = 4096


@dataclass(frozen=True, slots=True)
class Tariff:
    price: Money
    per_units: int = 1
    increment: int = 1
    scaled: int = field(init=False, default=0)  # the price in the stored scale
    # Prices already worked out, by units: a session asks for the same few quantities
    # again and again (bounded; a Money is immutable, so sharing one is safe).
    _prices: dict[int, Money] = field(
        init=False, default_factory=dict, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.per_units < 1 or self.increment < 1:
            raise ValueError("per_units and increment must be at least 1")
        if self.price.is_negative():
            raise ValueError("a price is not negative")
        object.__setattr__(self, "scaled", scaled_money(self.price))

    def billed(self, units: int) -> int:
        return -(-units // self.increment) * self.increment

    def price_of(self, units: int) -> Money:
        known = self._prices.get(units)
        if known is not None:
            return known
        # Integer arithmetic in the stored scale: exact, rounded up to a whole stored unit.
        total = -(-self.scaled * self.billed(units) // self.per_units)
        price = unscaled_money(total, self.price.currency)
        if len(self._prices) >= _REMEMBERED_PRICES:
            self._prices.clear()
        self._prices[units] = price
        return price

    def units_for(self, amount: Money) -> int:
        if amount.currency != self.price.currency:
            raise NotPriced(f"no tariff in {amount.currency}")
        if self.scaled == 0:
            return MAX_QUANTITY
        # The most units n (a multiple of the increment) with ceil(price * n / per) <= amount.
        most = scaled_money(amount) * self.per_units // self.scaled
        return min(most // self.increment * self.increment, MAX_QUANTITY)


def tariffs_from_json(raw: Mapping[str, Any]) -> dict[str, Tariff]:
    return {
        service: Tariff(
            Money.of(str(spec["price"]), str(spec["currency"])),
            int(spec.get("per_units", 1)),
            int(spec.get("increment", 1)),
        )
        for service, spec in raw.items()
    }


class InMemoryPricing:
    """``Pricing`` from a dict of service -> tariff (the same for every account)."""

    def __init__(self, tariffs: Mapping[str, Tariff] | None = None) -> None:
        self.tariffs: dict[str, Tariff] = dict(tariffs or {})

    def _tariff(self, service: str) -> Tariff:
        tariff = self.tariffs.get(service)
        if tariff is None:
            raise NotPriced(f"no tariff for service {service!r}")
        return tariff

    async def price(
        self, account_id: str, service: str, destination: str, units: int, at: datetime
    ) -> Money:
        return self._tariff(service).price_of(units)

    async def units_for(
        self, account_id: str, service: str, destination: str, amount: Money, at: datetime
    ) -> int:
        return self._tariff(service).units_for(amount)

    async def prices(
        self,
        account_id: str,
        service: str,
        destination: str,
        quantities: Sequence[int],
        at: datetime,
    ) -> list[Money]:
        tariff = self._tariff(service)
        return [tariff.price_of(units) for units in quantities]


__all__ = ["InMemoryPricing", "Tariff", "tariffs_from_json"]
