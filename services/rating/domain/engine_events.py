"""What the tariff engine takes and gives: the usage event and the rated charge.

``UsageEvent`` is one usage record (or a quote's question); ``RatedCharge`` is its
price with every step that produced it (band segments, unit lines, rounding, cost
limit, discounts, taxes), so an invoice line can be explained. ``UnitsForAmount``
answers what an amount buys. The engine itself is in ``engine``.

Result types are mutable slotted dataclasses rather than frozen ones on purpose:
a frozen dataclass sets every field through ``object.__setattr__``, which costs
several microseconds per object on a path that must rate 50,000 events a second.
Treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.common.money import Money

from .charge_models import UnitLine
from .discounts import DiscountKind
from .taxes import TaxLine

# Longest call the engine rates in one piece; longer records are refused as suspect.
MAX_CALL_SECONDS: Final = 31 * 86_400
MAX_QUANTITY: Final = 10**15


# -- input --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class UsageEvent:
    """One usage record to rate, or the question of a price quote.

    ``plan_code`` is the account's subscribed plan (the service layer resolves it
    from the subscription). ``quantity`` counts the product's unit: seconds,
    bytes, events. ``allowance_remaining`` is what is left of the plan's included
    units for this service in the current cycle, ``usage_to_date`` the chargeable
    units already rated in the cycle (for packages and tiers), ``discount_uses``
    the uses left of count-limited discounts by code; the engine keeps no
    counters, and absent counters mean "none left". ``start`` must be aware; its
    fraction of a second is ignored (CDRs count whole seconds).
    """

    record_id: str
    account_id: str
    plan_code: str
    service: str
    start: datetime
    quantity: int
    destination: str = ""
    customer_id: str = ""
    customer_ref: str = ""  # ``ext:<ref>``: packages may name the customer so
    group: str = ""
    time_zone: str = "UTC"
    tax_region: str = ""
    amount: Decimal | None = None  # the base of percentage rates
    allowance_remaining: int = 0
    usage_to_date: int = 0
    discount_uses: Mapping[str, int] | None = None
    promotions: tuple[str, ...] = ()  # discount codes the account holds (coupons)


class AmountBasis(StrEnum):
    """Which amount ``units_for_amount`` compares: prepaid balances hold gross money."""

    GROSS = "gross"
    NET = "net"


# -- output -------------------------------------------------------------------------


class CostLimit(StrEnum):
    MINIMUM = "minimum"
    MAXIMUM = "maximum"


# Plain references: enum member lookup through the metaclass is slow on the rating path.
_MINIMUM: Final = CostLimit.MINIMUM
_MAXIMUM: Final = CostLimit.MAXIMUM


@dataclass(slots=True)
class BandSegment:
    """The part of a call in one time band and what it was charged."""

    band: str
    offset: int  # seconds from the start of the call
    seconds: int  # real seconds of the call in this band
    first_increment: Decimal  # price of the first increment when charged here, else 0
    increments: int  # subsequent increments charged in this segment
    increment_seconds: int
    increment_price: Decimal
    amount: Decimal


@dataclass(slots=True)
class DiscountLine:
    code: str
    kind: DiscountKind
    value: Decimal  # percent or amount, as defined
    amount: Decimal  # taken off
    counted: bool  # count-limited: the caller should record one use


@dataclass(slots=True)
class RatedCharge:
    """The price of one event and how it came about (amounts in ``currency``)."""

    record_id: str
    account_id: str
    service: str
    currency: str
    quantity: int
    allowance_units: int  # drawn from the included allowance
    charged_units: int  # billed units: seconds rounded to increments, or units after allowance
    usage_amount: Decimal  # after rounding and cost limits, before discounts
    discount: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal
    plan_code: str
    plan_version: int
    package_code: str | None
    package_version: int | None
    rate_id: str
    destination: str | None
    matched_prefix: str | None
    connection_fee: Decimal
    segments: list[BandSegment]
    unit_lines: list[UnitLine]
    rounding_adjustment: Decimal
    cost_limit: CostLimit | None
    limit_adjustment: Decimal
    discounts: list[DiscountLine]
    taxes: list[TaxLine]

    def money(self, amount: Decimal) -> Money:
        """One of this charge's amounts as ``Money``."""
        return Money(amount, self.currency)

    @property
    def gross_money(self) -> Money:
        return Money(self.gross, self.currency)

    @property
    def net_money(self) -> Money:
        return Money(self.net, self.currency)


@dataclass(slots=True)
class UnitsForAmount:
    """The most units (up to the requested quantity) an amount pays for, and their charge."""

    units: int
    charge: RatedCharge
