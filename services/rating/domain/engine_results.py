"""The rated charge as explained to an invoice: priced nanos dressed as ``RatedCharge``.

``ChargeExplanation`` is the part of ``RatingEngine`` that turns what pricing
produced into a ``RatedCharge`` whose lines add up: ``connection_fee +
sum(segment amounts) + sum(unit line amounts) + rounding_adjustment +
limit_adjustment == usage_amount``. Rated amounts repeat (a tariff has few
distinct call costs), so Decimals of nanos are memoised per precision here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from services.common.money import MAX_SCALE

from .amounts import from_nanos, plain, shown_amount
from .engine_compiled import _Priced, _Resolved
from .engine_events import BandSegment, DiscountLine, RatedCharge, UsageEvent


class ChargeExplanation:
    """Building the ``RatedCharge`` of a priced event; mixed into ``RatingEngine``."""

    def _result(
        self, resolved: _Resolved, event: UsageEvent, quantity: int, priced: _Priced
    ) -> RatedCharge:
        (
            call,
            lines,
            allowance,
            charged,
            raw,
            rounded,
            usage,
            limit,
            applied,
            net,
            tax_amounts,
            gross,
            known_tax_lines,
        ) = priced
        plan, package, rate, prefix, _, taxes, _, _, _ = resolved
        decimals = _DECIMALS[rate.places]
        zero = rate.zero
        segments: list[BandSegment] = []
        connection = zero
        denominator = rate.denominator
        if call is not None:
            tariff = rate.tariff
            assert tariff is not None
            detail = _DECIMALS[rate.detail_places]
            if call[0]:
                connection = (
                    tariff.connection_fee_in(call[1][0][0])
                    if tariff.band_connection_fees
                    else rate.connection
                )
            increment = tariff.next_increment
            for band, offset, seconds, first, increments, prices, amount in call[1]:
                segments.append(
                    BandSegment(
                        band,
                        offset,
                        seconds,
                        prices.first_price if first else zero,
                        increments,
                        increment,
                        prices.next_price,
                        detail[amount] if denominator == 1 else shown_amount(amount, denominator),
                    )
                )
            if denominator == 1:
                rounding = detail[rounded - raw] if rounded != raw else zero
            else:  # what the shown lines (nine places) leave to the one rounding
                rounding = plain(
                    from_nanos(rounded, MAX_SCALE) - connection - sum(s.amount for s in segments)
                )
        elif denominator == 1:
            rounding = _exact(rounded - raw)
        else:
            rounding = plain(from_nanos(rounded, MAX_SCALE) - sum(u.amount for u in lines))
        if known_tax_lines is not None:
            tax_lines = list(known_tax_lines)  # a copy: the memoised list is shared
        else:
            tax_lines = taxes.lines(tax_amounts, rate.places) if tax_amounts else []
        discount_lines = [
            DiscountLine(d.code, d.kind, d.value, decimals[off], d.max_uses is not None)
            for d, off in applied
        ]
        return RatedCharge(
            event.record_id,
            event.account_id,
            event.service,
            plan.currency,
            quantity,
            allowance,
            charged,
            decimals[usage],
            decimals[sum(off for _, off in applied)] if applied else zero,
            decimals[net],
            decimals[gross - net] if gross != net else zero,
            decimals[gross],
            plan.plan_code,
            plan.version,
            package.code if package is not None else None,
            package.version if package is not None else None,
            rate.id,
            rate.destination,
            prefix,
            connection,
            segments,
            lines,
            rounding,
            limit,
            decimals[usage - rounded] if limit is not None else zero,
            discount_lines,
            tax_lines,
        )


class _DecimalCache(dict[int, Decimal]):
    """Decimals of nanos at one precision, built on first use: rated amounts repeat (a
    tariff has few distinct call costs) and a dict hit is cheaper than building a Decimal."""

    __slots__ = ("places",)

    def __init__(self, places: int) -> None:
        super().__init__()
        self.places = places

    def __missing__(self, nanos: int) -> Decimal:
        value = from_nanos(nanos, self.places)
        if len(self) < _DECIMALS_LIMIT:
            self[nanos] = value
        return value


_DECIMALS_LIMIT: Final = 1 << 16
_DECIMALS: Final = tuple(_DecimalCache(places) for places in range(MAX_SCALE + 1))


def _decimal(nanos: int, places: int) -> Decimal:
    """``from_nanos`` for an amount already at ``places`` precision, memoised."""
    return _DECIMALS[places][nanos]


def _exact(nanos: int) -> Decimal:
    """An exact amount at nine places with trailing zeros dropped (0.005, not 0.005000000)."""
    return plain(from_nanos(nanos, MAX_SCALE))
