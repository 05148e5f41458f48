"""Resolving a request's rating groups and quoting their prices (ADR 0011)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.charging.domain.credit_control import (
    CreditControlRequest,
    RatingGroupRequest,
    RequestType,
)
from services.charging.domain.services import ServiceDefinition
from services.charging.domain.units import (
    MAX_QUANTITY,
    Unit,
    UnitKind,
    money_unit,
    scaled_money,
)
from services.charging.service_layer.handlers.base import HandlersBase
from services.charging.service_layer.handlers.positions import (
    Position,
    cumulative,
)
from services.charging.service_layer.ports import NotPriced, ScriptResult
from services.common.errors import InvalidArgument
from services.common.money import Money

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Group:
    """A rating group of a request with its definition and the quoted prices."""

    index: int
    request: RatingGroupRequest
    service: ServiceDefinition
    unit: Unit | None
    payload: dict[str, Any]


class Quoting(HandlersBase):
    """Rating groups of a request resolved and priced into the script's payload."""

    async def _resolve(
        self, request: CreditControlRequest
    ) -> list[tuple[int, RatingGroupRequest, ServiceDefinition, Unit | None]]:
        resolved = []
        for index, rg in enumerate(request.rating_groups):
            field = f"multiple_services[{index}]"
            service = await self.catalog.require(rg.rating_group, f"{field}.rating_group")
            unit = self._unit_of(service, rg, field, request.request_type)
            resolved.append((index, rg, service, unit))
        return resolved

    async def _groups(
        self,
        request: CreditControlRequest,
        resolved: list[tuple[int, RatingGroupRequest, ServiceDefinition, Unit | None]],
        at: datetime,
        positions: dict[int, Position] | None = None,
    ) -> list[Group]:
        positions = positions or {}

        def quote(
            index: int, rg: RatingGroupRequest, service: ServiceDefinition, unit: Unit | None
        ) -> Awaitable[dict[str, Any]]:
            position = positions.get(rg.rating_group, Position())
            field = f"multiple_services[{index}]"
            return self._quote(request, rg, service, unit, at, field, position)

        if len(resolved) == 1:  # the common case: no tasks to create
            quotes = [await quote(*resolved[0])]
        else:
            quotes = await asyncio.gather(*(quote(*group) for group in resolved))
        return [
            Group(index, rg, service, unit, payload)
            for (index, rg, service, unit), payload in zip(resolved, quotes, strict=True)
        ]

    def _unit_of(
        self,
        service: ServiceDefinition,
        rg: RatingGroupRequest,
        field: str,
        request_type: RequestType,
    ) -> Unit | None:
        """The unit of this rating group's amounts; refuses amounts in another unit."""
        if service.unit_kind is UnitKind.MONEY:
            for name, quantity in (("requested_units", rg.requested), ("used_units", rg.used)):
                if quantity is not None and not quantity.unit.is_money:
                    raise InvalidArgument.field(
                        f"{field}.{name}",
                        f"rating group {service.rating_group} is charged in money",
                    )
            currencies = {q.unit.code for q in (rg.requested, rg.used) if q is not None}
            if len(currencies) > 1:
                raise InvalidArgument.field(
                    f"{field}.used_units", "must be in the currency of requested_units"
                )
            if currencies:
                return money_unit(currencies.pop())
            if request_type in (RequestType.TERMINATE, RequestType.UPDATE):
                return None
            raise InvalidArgument.field(
                f"{field}.requested_units", "money rating groups need an amount with a currency"
            )
        for name, quantity in (("requested_units", rg.requested), ("used_units", rg.used)):
            if quantity is not None and not service.accepts(quantity.unit):
                raise InvalidArgument.field(
                    f"{field}.{name}",
                    f"rating group {service.rating_group} ({service.service}) is measured in "
                    f"{service.unit().key}, not {quantity.unit.key}",
                )
        return service.unit()

    async def _quote(
        self,
        request: CreditControlRequest,
        rg: RatingGroupRequest,
        service: ServiceDefinition,
        unit: Unit | None,
        at: datetime,
        field: str,
        position: Position,
    ) -> dict[str, Any]:
        wanted = -1
        if request.request_type is not RequestType.TERMINATE:
            if rg.requested is not None:
                wanted = rg.requested.amount
            elif unit is not None and not unit.is_money:
                wanted = self._default_quota(service)
        used = rg.used.amount if rg.used is not None else -1
        payload: dict[str, Any] = {
            "g": rg.rating_group,
            "svc": service.service,
            "u": unit.key if unit is not None else "",
            "fr": 1 if service.is_free else 0,
            "w": wanted,
            "p": -1,
            "mc": "",
            "x": used,
            "c": -1,
            "rf": 0,
        }
        if not cumulative(service):
            return payload
        session = request.request_type is not RequestType.EVENT
        # Positions are units charged in money so far: a report is priced as the call's total
        # so far (the script debits that minus what was already debited), a grant as what the
        # units after the report add. Events are a call of their own (position 0).
        n = position.used if session else 0
        base = n
        if session and position.grant_base is not None:
            base = position.grant_base
        elif used > 0 and position.kind not in ("u", "f"):
            base = n + used  # the report is charged in money (checked by the script)
        needed: set[int] = set()
        if used > 0:
            needed.add(n + used)
        if wanted > 0:
            needed |= {base, base + wanted}
            if session:
                needed |= {base + wanted + 1, base + 1}
        needed.discard(0)
        try:
            prices = await self._prices(request, service, rg, sorted(needed), at)
        except NotPriced:
            payload["p"], payload["c"], payload["mc"], payload["rf"] = -1, -1, "", 1
            return payload
        currency = next((money.currency for money in prices.values()), "")
        # Each quantity's price in the stored scale, once (a quantity is often needed twice).
        amounts = {0: 0}
        for units, price in prices.items():
            name = "used_units" if used > 0 and units == n + used else "requested_units"
            amounts[units] = self._scaled_price(price, f"{field}.{name}")[0]
        payload["mc"] = currency
        if used > 0:
            payload["c"] = amounts[n + used]
        if wanted > 0:
            payload["p"] = amounts[base + wanted] - amounts[base]
        if session:
            payload["cb"], payload["gb"] = n, base
            if wanted > 0:
                payload["pg"] = amounts[base]
                payload["pn"] = amounts[base + wanted + 1] - amounts[base + wanted]
                payload["p1"] = amounts[base + 1] - payload["pg"]
        return payload

    async def _prices(
        self,
        request: CreditControlRequest,
        service: ServiceDefinition,
        rg: RatingGroupRequest,
        quantities: list[int],
        at: datetime,
    ) -> dict[int, Money]:
        """The price of each quantity (rating is asked concurrently when there are several)."""
        if not quantities:
            return {}
        answers = await self.pricing.prices(
            request.account_id, service.service, rg.destination, quantities, at
        )
        return dict(zip(quantities, answers, strict=True))

    def _scaled_price(self, price: Money, field: str) -> tuple[int, str]:
        amount = scaled_money(price)
        if amount > MAX_QUANTITY:
            raise InvalidArgument.field(field, f"costs {price}: more than any balance can hold")
        return amount, price.currency


def foreign_currency(
    request: CreditControlRequest, groups: Sequence[Group], result: ScriptResult
) -> InvalidArgument:
    """A script's CURRENCY answer as the bad input it is: money asked for in a currency the
    account holds no bucket of is no lack of credit (ADR 0035)."""
    index = int(result.answer.get("i", 0))
    group = groups[index] if index < len(groups) else None
    rg = group.request if group is not None else None
    name = "requested_units" if rg is None or rg.requested is not None else "used_units"
    quantity = (rg.requested or rg.used) if rg is not None else None
    currency = quantity.unit.code if quantity is not None else "that currency"
    return InvalidArgument.field(
        f"multiple_services[{index}].{name}",
        f"account {request.account_id} holds no {currency} (no bucket in that currency)",
    )
