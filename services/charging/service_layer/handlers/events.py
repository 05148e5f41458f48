"""Event requests (RFC 4006 section 6): direct debits, refunds and price enquiries."""

from __future__ import annotations

from datetime import datetime

from services.charging.domain.credit_control import (
    CreditControlAnswer,
    CreditControlRequest,
    RatingGroupAnswer,
    RequestedAction,
    ResultCode,
    overall_result,
)
from services.charging.domain.instants import to_ms
from services.charging.domain.units import (
    Quantity,
    unscaled_money,
)
from services.charging.service_layer.handlers.base import _RESULTS
from services.charging.service_layer.handlers.quoting import Group, Quoting, foreign_currency


class Events(Quoting):
    """EVENT requests: one-shot debits, refunds, balance checks and price enquiries."""

    # -- events (RFC 4006 section 6) -----------------------------------------------------------
    async def _event(self, request: CreditControlRequest, now: datetime) -> CreditControlAnswer:
        groups = await self._groups(request, await self._resolve(request), now)
        if request.action is RequestedAction.PRICE_ENQUIRY:
            await self._require_account(request.account_id)
            return self._price_answer(request, groups)
        assert request.action is not None
        payload = {
            "a": request.action.value,
            "acct": request.account_id,
            "now": to_ms(now),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
            "sid": request.session_id,
            "rn": request.request_number,
            "rgs": [g.payload for g in groups],
        }
        result = await self._run(
            request.account_id,
            lambda: self.store.event(request.account_id, f"s:{request.session_id}", payload),
        )
        if result.status == "CURRENCY":
            raise foreign_currency(request, groups, result)
        await self._durable(request.account_id, result)
        if result.status == "OOO":
            return CreditControlAnswer(
                request.session_id,
                request.request_number,
                request.request_type,
                ResultCode.OUT_OF_ORDER,
            )
        by_group = {g.request.rating_group: g for g in groups}
        rgs = []
        for raw in result.answer.get("rgs", []):
            group = by_group[int(raw["g"])]
            code = _RESULTS.get(str(raw["rc"]), ResultCode.RATING_FAILED)
            granted = int(raw.get("gu", "0"))
            money = int(raw.get("cm", "0"))
            units = int(raw.get("cu", "0"))
            currency = str(raw.get("cc") or "")
            unit = group.unit
            rgs.append(
                RatingGroupAnswer(
                    rating_group=group.request.rating_group,
                    result=code,
                    granted=Quantity(unit, granted)
                    if unit and granted > 0 and code is ResultCode.SUCCESS
                    else None,
                    cost=unscaled_money(money, currency) if money and currency else None,
                    charged_units=Quantity(unit, units) if units and unit else None,
                )
            )
        return CreditControlAnswer(
            request.session_id,
            request.request_number,
            request.request_type,
            overall_result([a.result for a in rgs]),
            tuple(rgs),
        )

    def _price_answer(
        self, request: CreditControlRequest, groups: list[Group]
    ) -> CreditControlAnswer:
        rgs = []
        for g in groups:
            p = g.payload
            if p["fr"] or p["p"] == 0:
                rgs.append(RatingGroupAnswer(g.request.rating_group, ResultCode.SUCCESS))
            elif g.unit is not None and g.unit.is_money and g.request.requested is not None:
                rgs.append(
                    RatingGroupAnswer(
                        g.request.rating_group,
                        ResultCode.SUCCESS,
                        cost=g.request.requested.to_money(),
                    )
                )
            elif p["p"] > 0:
                rgs.append(
                    RatingGroupAnswer(
                        g.request.rating_group,
                        ResultCode.SUCCESS,
                        cost=unscaled_money(p["p"], p["mc"]),
                    )
                )
            else:
                rgs.append(RatingGroupAnswer(g.request.rating_group, ResultCode.RATING_FAILED))
        return CreditControlAnswer(
            request.session_id,
            request.request_number,
            request.request_type,
            overall_result([a.result for a in rgs]),
            tuple(rgs),
        )
