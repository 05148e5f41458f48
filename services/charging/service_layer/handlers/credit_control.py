"""Credit control (CHG-1..3): INITIAL, UPDATE and TERMINATE requests of a session.

The hot path (``credit_control``) is: look the rating groups up, ask pricing for
the money-priced ones (cumulatively: from the session's priced position, read
first, ADR 0011), run **one** Lua script that applies the whole request
atomically (with the session's idempotency), commit the journal entries it
produced to the SQL ledger (group commit), and only then answer. The same shape
serves events, top-ups, adjustments and voucher credits. Whatever the live store
lost (NOACCOUNT) is rebuilt from SQL first (``HandlersBase._run``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from services.charging.domain.accounts import FinalUnitAction
from services.charging.domain.credit_control import (
    CreditControlAnswer,
    CreditControlRequest,
    FinalUnitIndication,
    RatingGroupAnswer,
    RequestType,
    ResultCode,
    overall_result,
)
from services.charging.domain.instants import from_ms, to_ms
from services.charging.domain.units import (
    Quantity,
    unscaled_money,
)
from services.charging.service_layer.handlers.base import _RESULTS
from services.charging.service_layer.handlers.events import Events
from services.charging.service_layer.handlers.positions import (
    Position,
    cumulative,
    positions_of,
)
from services.charging.service_layer.handlers.quoting import Group, foreign_currency
from services.charging.service_layer.ports import (
    NotPriced,
    ScriptResult,
)
from services.common.errors import Unavailable

_STALE_ATTEMPTS = 4


class CreditControl(Events):
    """INITIAL, UPDATE and TERMINATE requests: the hot path."""

    # -- credit control ----------------------------------------------------------------------
    async def credit_control(self, request: CreditControlRequest) -> CreditControlAnswer:
        if request.subscriber:  # named by a Subscription-Id (ADR 0058): find the account
            account = await self.subscribers.account_for(request.subscriber)
            request = replace(request, account_id=account, subscriber=())
        now = self.clock.now()
        if request.request_type is RequestType.EVENT:
            return await self._event(request, now)
        resolved = await self._resolve(request)
        validity = max((self._validity(service) for _, _, service, _ in resolved), default=0)
        validity = validity or self.options.validity_seconds
        now_ms = to_ms(now)
        # Cumulative pricing (ADR 0011): usage of a session is priced as one call, from the
        # session's position per rating group, at the session's start.
        start_ms, positions = now_ms, dict[int, Position]()
        priced = any(cumulative(service) for _, _, service, _ in resolved)
        if priced and request.request_type is not RequestType.INITIAL:
            start_ms, positions = await self._positions(request, now_ms)
        for _ in range(_STALE_ATTEMPTS):
            groups = await self._groups(request, resolved, from_ms(start_ms), positions)
            payload = {
                "t": request.request_type.value,
                "sid": request.session_id,
                "rn": request.request_number,
                "acct": request.account_id,
                "now": now_ms,
                "t0": start_ms,
                "sweep": now_ms + (validity + self.options.grace_seconds) * 1000,
                "win": self.options.window_seconds,
                "jd": self.options.journal_drain_ms,
                "rgs": [g.payload for g in groups],
            }
            result = await self._run(
                request.account_id,
                partial(self.store.credit_control, request.account_id, request.session_id, payload),
            )
            if result.status == "CURRENCY":
                raise foreign_currency(request, groups, result)
            if result.status != "STALE":
                if priced:
                    self._remember(request, result, start_ms)
                break
            # Priced from another position than the session's (a concurrent request of the
            # session, a rebuilt Redis, usage that went to unit buckets): price again.
            start_ms, hinted = positions_of(result.answer, now_ms)
            positions = {
                group: replace(found, kind=positions.get(group, found).kind)
                for group, found in hinted.items()
            }
        else:
            raise Unavailable(
                f"session {request.session_id} changed while it was being priced; retry"
            )
        await self._durable(request.account_id, result)
        return await self._answer(request, groups, result)

    def _remember(self, request: CreditControlRequest, result: ScriptResult, start_ms: int) -> None:
        """Keep the position an answer left an open session in, for its next report
        (``start_ms``: the start the request was priced from, when no usage moved it yet)."""
        key = (request.account_id, request.session_id)
        known = self._known.pop(key, None)
        answer = result.answer
        cum = answer.get("cum")
        if result.status == "REPLAY" and known is not None:
            self._known[key] = known  # a replay moved nothing
            return
        if result.status != "OK" or answer.get("st") != "O":
            return  # closed or late: nothing to remember (read it if it comes back)
        # No 'cum' in the answer: nothing charged in money yet, from the start priced from.
        start_ms, positions = positions_of(cum, start_ms) if cum else (start_ms, {})
        self._known[key] = (
            start_ms,
            {
                int(raw["g"]): Position(
                    positions.get(int(raw["g"]), Position()).used, None, str(raw.get("k", ""))
                )
                for raw in answer.get("rgs", ())
            },
        )
        if len(self._known) > self.options.remembered_sessions:
            del self._known[next(iter(self._known))]

    async def _positions(
        self, request: CreditControlRequest, now_ms: int
    ) -> tuple[int, dict[int, Position]]:
        """The session's start and priced position per rating group (none yet: now, zero)."""
        known = self._known.get((request.account_id, request.session_id))
        if known is not None and all(rg.rating_group in known[1] for rg in request.rating_groups):
            return known[0], dict(known[1])
        names = ["cum", *(f"g:{rg.rating_group}" for rg in request.rating_groups)]
        session = await self.store.session_fields(request.account_id, request.session_id, names)
        start_ms, positions = positions_of(
            json.loads(session["cum"]) if session.get("cum") else {}, now_ms
        )
        for rg in request.rating_groups:
            held = session.get(f"g:{rg.rating_group}")
            position = positions.get(rg.rating_group, Position())
            kind = str(json.loads(held).get("k", "")) if held else ""
            positions[rg.rating_group] = Position(position.used, None, kind)
        return start_ms, positions

    async def _answer(
        self, request: CreditControlRequest, groups: list[Group], result: ScriptResult
    ) -> CreditControlAnswer:
        if result.status == "OOO":
            return CreditControlAnswer(
                request.session_id,
                request.request_number,
                request.request_type,
                ResultCode.OUT_OF_ORDER,
            )
        if result.status in ("CLOSED", "NOSESSION"):
            # Terminated, or never opened (RFC 4006: DIAMETER_UNKNOWN_SESSION_ID, ADR 0035).
            return CreditControlAnswer(
                request.session_id,
                request.request_number,
                request.request_type,
                ResultCode.UNKNOWN_SESSION_ID,
            )
        answer = result.answer
        cum = answer.get("cum") or {}
        # Partial grants are priced when and from where the script priced them (replays too).
        at = from_ms(int(cum.get("t0") or answer.get("now") or to_ms(self.clock.now())))
        by_group = {g.request.rating_group: g for g in groups}
        fui = FinalUnitIndication(
            FinalUnitAction(answer.get("fua") or "terminate"),
            str(answer.get("fur", "")),
            str(answer.get("fuf", "")),
        )
        rgs = []
        for raw in answer.get("rgs", []):
            group = by_group.get(int(raw["g"]))
            if group is None:
                continue
            rgs.append(await self._rating_group_answer(request, group, raw, fui, at))
        results = [a.result for a in rgs]
        overall = overall_result(results)
        if answer.get("st") == "X" and request.request_type is RequestType.UPDATE:
            overall = ResultCode.UNKNOWN_SESSION_ID
        return CreditControlAnswer(
            request.session_id, request.request_number, request.request_type, overall, tuple(rgs)
        )

    async def _rating_group_answer(
        self,
        request: CreditControlRequest,
        group: Group,
        raw: dict[str, Any],
        fui: FinalUnitIndication,
        at: datetime,
    ) -> RatingGroupAnswer:
        code = _RESULTS.get(str(raw["rc"]), ResultCode.RATING_FAILED)
        granted_units = int(raw.get("gu", "0"))
        if granted_units == -1:
            # Money was short: grant the units the held money buys after the session's
            # position (the call's total those units make, minus what was used before them,
            # so the connection fee and first increment are not counted again).
            base, base_price = int(raw.get("gb", "0")), int(raw.get("pg", "0"))
            held = unscaled_money(base_price + int(raw["rq"]), str(group.payload["mc"]))
            try:
                total = await self.pricing.units_for(
                    request.account_id, group.service.service, group.request.destination, held, at
                )
            except NotPriced:
                total = 0
            granted_units = min(max(total - base, 0), max(group.payload["w"], 0))
            if granted_units <= 0:
                code = ResultCode.CREDIT_LIMIT_REACHED
        unit = group.unit
        granted = Quantity(unit, granted_units) if granted_units > 0 and unit else None
        charged_money = int(raw.get("cm", "0"))
        charged_units = int(raw.get("cu", "0"))
        currency = str(raw.get("cc") or group.payload.get("mc") or "")
        return RatingGroupAnswer(
            rating_group=group.request.rating_group,
            result=code,
            granted=granted,
            validity_seconds=self._validity(group.service) if granted else 0,
            final_unit=fui if granted and int(raw.get("fin", 0)) else None,
            cost=unscaled_money(charged_money, currency) if charged_money and currency else None,
            charged_units=Quantity(unit, charged_units) if charged_units and unit else None,
        )
