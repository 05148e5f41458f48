"""Pricing arithmetic: what a quantity costs under a resolved tariff, in nanos.

``PricingArithmetic`` is the part of ``RatingEngine`` that prices a quantity: the
time tariff's band split and increments (``tariffs``) or the charge model
(``charge_models``), the allowance drawn first, the one rounding to the rate's
precision (ADR 0041 for prices per rate unit), the minimum and maximum cost, then
discounts and taxes. It also finds the ranges of unit counts on which a charge
never decreases, for ``units_for_amount``.
"""

from __future__ import annotations

from .amounts import round_nanos, round_ratio, to_nanos
from .charge_models import Percentage, UnitLine, VolumeTiers
from .discounts import Discount
from .engine_compiled import _Priced, _Resolved
from .engine_events import _MAXIMUM, _MINIMUM, UsageEvent
from .errors import InvalidEvent
from .tariffs import price_call
from .taxes import TaxSet


class PricingArithmetic:
    """Integer pricing of a resolved event; mixed into ``RatingEngine``."""

    def _price(self, resolved: _Resolved, event: UsageEvent, quantity: int) -> _Priced:
        _, _, rate, _, instant, taxes, discounts, timeline, allowance_rule = resolved
        tariff = rate.tariff
        call = None
        lines: list[UnitLine] = []
        if tariff is not None:
            if quantity:
                assert timeline is not None
                parts = timeline.split(instant, quantity)
                remaining = event.allowance_remaining if allowance_rule is not None else 0
                call = price_call(tariff, parts, remaining, rate.id)
                raw, allowance, charged = call[4], call[3], call[2]
            else:
                raw = allowance = charged = 0
        else:
            model = rate.model
            if isinstance(model, Percentage):
                base = self._base_amount(event)
                allowance, charged = 0, quantity
                raw, lines = model.price_amount(base, rate.places, rate.rounding)
            else:
                assert model is not None
                remaining = event.allowance_remaining if allowance_rule is not None else 0
                allowance = remaining if remaining < quantity else quantity
                charged = quantity - allowance
                raw = 0
                if charged:
                    raw, lines = model.price_usage(charged, event.usage_to_date)
        places = rate.places
        if rate.denominator == 1:
            rounded = raw if raw % rate.step == 0 else round_nanos(raw, places, rate.rounding)
        else:  # a price per rate unit: the exact fraction, rounded once
            rounded = round_ratio(raw, rate.denominator, places, rate.rounding)
        usage = rounded
        limit = None
        if charged and raw >= 0:
            if rate.min is not None and usage < rate.min:
                usage, limit = rate.min, _MINIMUM
            elif rate.max is not None and usage > rate.max:
                usage, limit = rate.max, _MAXIMUM
        tax_lines = None
        if discounts:
            applied, net, tax_amounts, gross = self._settle(taxes, discounts, usage, places)
        else:
            applied = []
            net, tax_amounts, gross, tax_lines = taxes.settle(usage, places)
        return (
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
            tax_lines,
        )

    @staticmethod
    def _settle(
        taxes: TaxSet, discounts: tuple[Discount, ...], usage: int, places: int
    ) -> tuple[list[tuple[Discount, int]], int, list[int], int]:
        """Discounts, then taxes: (discounts applied, net, tax per rule, gross)."""
        left = usage
        applied: list[tuple[Discount, int]] = []
        for discount in discounts:  # usually none
            off = discount.amount_off(left, places)
            if off:
                applied.append((discount, off))
                left -= off
        net, tax_amounts, gross = taxes.apply(left, places)
        return applied, net, tax_amounts, gross

    @staticmethod
    def _base_amount(event: UsageEvent) -> int:
        if event.amount is None:
            raise InvalidEvent(
                "amount",
                f"a {event.service} event is priced as a percentage of an amount and needs one",
            )
        try:
            return to_nanos(event.amount)
        except ValueError as exc:
            raise InvalidEvent("amount", str(exc)) from exc

    def _monotone_pieces(
        self, resolved: _Resolved, event: UsageEvent, limit: int
    ) -> list[tuple[int, int]]:
        """Ranges of unit counts on which the charge never decreases, in order."""
        model = resolved[2].model
        if not isinstance(model, VolumeTiers):
            return [(0, limit)]
        # The charge can drop where the cycle total passes a tier's upper bound.
        offset = event.allowance_remaining if resolved[8] is not None else 0
        cuts = sorted(
            {
                high * model.unit_size - event.usage_to_date + 1 + offset
                for high in model.threshold_units()
            }
        )
        pieces: list[tuple[int, int]] = []
        low = 0
        for cut in cuts:
            if low < cut <= limit:
                pieces.append((low, cut - 1))
                low = cut
        pieces.append((low, limit))
        return pieces
