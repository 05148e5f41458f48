"""Charging's use cases: credit control, events, balances, top-ups, vouchers (CHG-1..11).

The hot path (``credit_control``) is: look the rating groups up, ask pricing for
the money-priced ones (cumulatively: from the session's priced position, read
first, ADR 0011), run **one** Lua script that applies the whole request
atomically (with the session's idempotency), commit the journal entries it
produced to the SQL ledger (group commit), and only then answer. The same shape
serves events, top-ups, adjustments and voucher credits. Whatever the live store
lost (NOACCOUNT) is rebuilt from SQL first (``rebuild``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    FinalUnitAction,
)
from services.charging.domain.buckets import Bucket, display_order
from services.charging.domain.credit_control import (
    CreditControlAnswer,
    CreditControlRequest,
    FinalUnitIndication,
    RatingGroupAnswer,
    RatingGroupRequest,
    RequestedAction,
    RequestType,
    ResultCode,
    overall_result,
)
from services.charging.domain.instants import from_ms, to_ms
from services.charging.domain.ledger import Direction, EntryKind, LedgerEntry
from services.charging.domain.services import ServiceDefinition
from services.charging.domain.units import (
    MAX_QUANTITY,
    Quantity,
    Unit,
    UnitKind,
    money_unit,
    scaled_money,
    unscaled_money,
)
from services.charging.domain.vouchers import code_hash, voucher_code
from services.charging.domain.wallet import bucket_meta
from services.charging.service_layer.catalog import ServiceCatalog
from services.charging.service_layer.commands import (
    AccountBalance,
    Adjust,
    BalanceLine,
    CloseBucket,
    CreateBucket,
    CreateVoucherBatch,
    Credited,
    DefineService,
    Forfeited,
    PolicyView,
    RedeemVoucher,
    SetPolicy,
    TopUp,
    UpdateBucket,
    VoucherBatch,
    fingerprint,
)
from services.charging.service_layer.ports import (
    AccountView,
    BalanceStore,
    JournalEntry,
    LedgerWriter,
    NotPriced,
    Pricing,
    ScriptResult,
)
from services.charging.service_layer.rebuild import AccountLoader, account_not_found
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.ids import new_id
from services.common.money import Money

log = logging.getLogger(__name__)

_RESULTS = {
    "OK": ResultCode.SUCCESS,
    "DENIED": ResultCode.END_USER_SERVICE_DENIED,
    "NOCREDIT": ResultCode.CREDIT_LIMIT_REACHED,
    "RATING": ResultCode.RATING_FAILED,
    "UNKNOWN": ResultCode.UNKNOWN_SESSION_ID,
    "NOBUCKET": ResultCode.RATING_FAILED,
    "TOOBIG": ResultCode.CREDIT_LIMIT_REACHED,
}


@dataclass(frozen=True)
class Options:
    """The knobs of the use cases (from ``ChargingSettings``)."""

    validity_seconds: int = 300
    grace_seconds: int = 30
    default_quota_time: int = 60
    default_quota_volume: int = 10 * 1024 * 1024
    default_quota_units: int = 1
    window_seconds: int = 86_400
    journal_drain_ms: int = 30_000
    voucher_key: bytes = b"reckon-charging-vouchers"
    # Sessions whose priced position this process remembers (0: always read it from Redis).
    remembered_sessions: int = 100_000


# Attempts at pricing a request when its session's position moved meanwhile.
_STALE_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class _Position:
    """A session's priced position in one rating group (cumulative pricing, ADR 0011)."""

    used: int = 0  # units charged in money so far in the session
    grant_base: int | None = None  # the position a grant starts from, when the script said
    kind: str = ""  # the class of the open reservation (u units, m money, f free)


def _cumulative(service: ServiceDefinition) -> bool:
    return service.is_rated and not service.is_free


_SessionKey = tuple[str, str]  # (account id, session id)
_Known = tuple[int, dict[int, _Position]]  # (start ms, position per rating group)


def _positions_of(cum: dict[str, Any], now_ms: int) -> tuple[int, dict[int, _Position]]:
    """(start ms, positions) from a session's 'cum' JSON or a STALE answer."""
    positions = {
        int(group): _Position(
            int(raw.get("n", "0")), int(raw["gb"]) if raw.get("gb") is not None else None
        )
        for group, raw in (cum.get("g") or {}).items()
    }
    return int(cum.get("t0") or now_ms), positions


@dataclass(frozen=True, slots=True)
class _Group:
    """A rating group of a request with its definition and the quoted prices."""

    index: int
    request: RatingGroupRequest
    service: ServiceDefinition
    unit: Unit | None
    payload: dict[str, Any]


class ChargingHandlers:
    def __init__(
        self,
        *,
        store: BalanceStore,
        writer: LedgerWriter,
        pricing: Pricing,
        uow_factory: Callable[[], ChargingUnitOfWork],
        catalog: ServiceCatalog,
        loader: AccountLoader,
        clock: Clock,
        options: Options,
    ) -> None:
        self.store = store
        self.writer = writer
        self.pricing = pricing
        self.uow_factory = uow_factory
        self.catalog = catalog
        self.loader = loader
        self.clock = clock
        self.options = options
        # The priced position each open session had after its last answer from this process
        # (insertion order = least recently answered first). A hint only: the script refuses
        # prices computed from any other position (STALE), so a position another worker or a
        # rebuild moved costs one more round trip, never a wrong charge (ADR 0019).
        self._known: dict[_SessionKey, _Known] = {}

    # -- plumbing ------------------------------------------------------------------------
    async def _run(
        self, account_id: str, call: Callable[[], Awaitable[ScriptResult]]
    ) -> ScriptResult:
        """Run a script; when Redis lost the account, rebuild it from SQL and run it again."""
        result = await call()
        if result.status == "NOACCOUNT":
            await self.loader.ensure_loaded(account_id)
            result = await call()
            if result.status == "NOACCOUNT":
                raise Unavailable(f"account {account_id} is being rebuilt; retry")
        return result

    async def _durable(self, account_id: str, result: ScriptResult) -> None:
        """The durability rule: the journal entries are in SQL before anyone is answered."""
        if result.touch_ms:
            await self._touch(account_id, result.touch_ms)
        if result.entries:
            await self.writer.commit(result.entries)

    async def _touch(self, account_id: str, due_ms: int) -> None:
        try:
            await self.store.touch(account_id, due_ms)
        except Exception:  # noqa: BLE001 - the sweeper's backstop scan finds the account
            log.warning("could not index account %s for the sweeper", account_id)

    def _uow(self) -> ChargingUnitOfWork:
        return self.uow_factory()

    def _default_quota(self, service: ServiceDefinition) -> int:
        if service.default_quota:
            return service.default_quota
        if service.unit_kind is UnitKind.TIME:
            return self.options.default_quota_time
        if service.unit_kind is UnitKind.VOLUME:
            return self.options.default_quota_volume
        return self.options.default_quota_units

    def _validity(self, service: ServiceDefinition) -> int:
        return service.validity_seconds or self.options.validity_seconds

    # -- credit control ----------------------------------------------------------------------
    async def credit_control(self, request: CreditControlRequest) -> CreditControlAnswer:
        now = self.clock.now()
        if request.request_type is RequestType.EVENT:
            return await self._event(request, now)
        resolved = await self._resolve(request)
        validity = max((self._validity(service) for _, _, service, _ in resolved), default=0)
        validity = validity or self.options.validity_seconds
        now_ms = to_ms(now)
        # Cumulative pricing (ADR 0011): usage of a session is priced as one call, from the
        # session's position per rating group, at the session's start.
        start_ms, positions = now_ms, dict[int, _Position]()
        priced = any(_cumulative(service) for _, _, service, _ in resolved)
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
            if result.status != "STALE":
                if priced:
                    self._remember(request, result, start_ms)
                break
            # Priced from another position than the session's (a concurrent request of the
            # session, a rebuilt Redis, usage that went to unit buckets): price again.
            start_ms, hinted = _positions_of(result.answer, now_ms)
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
        start_ms, positions = _positions_of(cum, start_ms) if cum else (start_ms, {})
        self._known[key] = (
            start_ms,
            {
                int(raw["g"]): _Position(
                    positions.get(int(raw["g"]), _Position()).used, None, str(raw.get("k", ""))
                )
                for raw in answer.get("rgs", ())
            },
        )
        if len(self._known) > self.options.remembered_sessions:
            del self._known[next(iter(self._known))]

    async def _positions(
        self, request: CreditControlRequest, now_ms: int
    ) -> tuple[int, dict[int, _Position]]:
        """The session's start and priced position per rating group (none yet: now, zero)."""
        known = self._known.get((request.account_id, request.session_id))
        if known is not None and all(rg.rating_group in known[1] for rg in request.rating_groups):
            return known[0], dict(known[1])
        names = ["cum", *(f"g:{rg.rating_group}" for rg in request.rating_groups)]
        session = await self.store.session_fields(request.account_id, request.session_id, names)
        start_ms, positions = _positions_of(
            json.loads(session["cum"]) if session.get("cum") else {}, now_ms
        )
        for rg in request.rating_groups:
            held = session.get(f"g:{rg.rating_group}")
            position = positions.get(rg.rating_group, _Position())
            kind = str(json.loads(held).get("k", "")) if held else ""
            positions[rg.rating_group] = _Position(position.used, None, kind)
        return start_ms, positions

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
        positions: dict[int, _Position] | None = None,
    ) -> list[_Group]:
        positions = positions or {}

        def quote(
            index: int, rg: RatingGroupRequest, service: ServiceDefinition, unit: Unit | None
        ) -> Awaitable[dict[str, Any]]:
            position = positions.get(rg.rating_group, _Position())
            field = f"multiple_services[{index}]"
            return self._quote(request, rg, service, unit, at, field, position)

        if len(resolved) == 1:  # the common case: no tasks to create
            quotes = [await quote(*resolved[0])]
        else:
            quotes = await asyncio.gather(*(quote(*group) for group in resolved))
        return [
            _Group(index, rg, service, unit, payload)
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
        position: _Position,
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
        if not _cumulative(service):
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

    async def _answer(
        self, request: CreditControlRequest, groups: list[_Group], result: ScriptResult
    ) -> CreditControlAnswer:
        if result.status == "OOO":
            return CreditControlAnswer(
                request.session_id,
                request.request_number,
                request.request_type,
                ResultCode.OUT_OF_ORDER,
            )
        if result.status == "CLOSED":
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
        group: _Group,
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
        self, request: CreditControlRequest, groups: list[_Group]
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

    async def _require_account(self, account_id: str) -> AccountView:
        view = await self.store.read_account(account_id)
        if view is None:
            await self.loader.ensure_loaded(account_id)
            view = await self.store.read_account(account_id)
            if view is None:
                raise Unavailable(f"account {account_id} is being rebuilt; retry")
        return view

    # -- account policy ---------------------------------------------------------------------
    async def set_policy(self, command: SetPolicy) -> PolicyView:
        policy = command.policy
        digest = fingerprint(command)

        def create_if_new() -> str:
            with self._uow() as uow:
                if command.request_id:
                    uow.replayed_resource(
                        self._scope("policy", policy.account_id), command.request_id, digest
                    )
                if uow.accounts.get(policy.account_id) is not None:
                    return "exists"
                now = self.clock.now()
                uow.accounts.add(policy, now)
                uow.remember_request(
                    self._scope("policy", policy.account_id),
                    command.request_id,
                    digest,
                    policy.account_id,
                )
                uow.commit()
                return "created"

        if await asyncio.to_thread(create_if_new) == "created":
            await self.loader.ensure_loaded(policy.account_id, fresh=True)
            return await self.get_policy(policy.account_id)
        t80, _ = policy.credit_thresholds
        payload = {
            "op": "POLICY",
            "acct": policy.account_id,
            "now": to_ms(self.clock.now()),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
            "rid": command.request_id,
            "fp": digest,
            "pol": {
                "mode": policy.mode.value,
                "cur": policy.currency,
                "lim": str(policy.credit_limit),
                "low": "" if policy.low_balance is None else str(policy.low_balance),
                "t80": str(t80),
                "fua": policy.final_unit_action.value,
                "fur": policy.redirect_address,
                "fuf": policy.restriction_filter_id,
            },
        }
        result = await self._run(
            policy.account_id,
            lambda: self.store.account(policy.account_id, command.request_id, payload),
        )
        self._check_replay(result, digest)
        await self._durable(policy.account_id, result)
        return await self.get_policy(policy.account_id)

    def _scope(self, operation: str, account_id: str) -> str:
        return f"charging.{operation}:{account_id}"

    def _check_replay(self, result: ScriptResult, digest: str) -> None:
        if result.status == "REPLAY" and result.answer.get("fp") not in (None, digest):
            raise InvalidArgument.field("request_id", "was already used for a different request")

    async def get_policy(self, account_id: str) -> PolicyView:
        def load() -> PolicyView:
            with self._uow() as uow:
                record = uow.accounts.get(account_id)
            if record is None:
                raise account_not_found(account_id)
            return PolicyView(record.policy, record.state, record.updated_at)

        view = await asyncio.to_thread(load)
        live = await self.store.read_account(account_id)
        if live is None:
            return view
        # The live store is ahead of SQL by at most the journal entries being committed.
        return PolicyView(
            _policy_of(account_id, live.fields), _state_of(live.fields), view.updated_at
        )

    # -- rating groups ------------------------------------------------------------------------
    async def define_service(self, command: DefineService) -> ServiceDefinition:
        def store() -> None:
            with self._uow() as uow:
                uow.services.put(command.definition, self.clock.now())
                uow.commit()

        await asyncio.to_thread(store)
        self.catalog.put(command.definition)
        return command.definition

    async def list_services(self) -> list[ServiceDefinition]:
        await self.catalog.reload()
        return self.catalog.all()

    # -- buckets and credits ------------------------------------------------------------------
    async def _replayed(
        self, operation: str, account_id: str, request_id: str, digest: str
    ) -> tuple[str | None, bool]:
        """(resource of a committed repeat, whether the account exists) from SQL."""
        if not request_id:
            return None, True

        def look() -> tuple[str | None, bool]:
            with self._uow() as uow:
                found = uow.replayed_resource(
                    self._scope(operation, account_id), request_id, digest
                )
                return found, uow.accounts.get(account_id) is not None

        return await asyncio.to_thread(look)

    async def create_bucket(self, command: CreateBucket) -> BalanceLine:
        digest = fingerprint(command)
        replayed, _ = await self._replayed("bucket", command.account_id, command.request_id, digest)
        if replayed is not None:
            return await self._line(command.account_id, replayed)
        bucket = Bucket(
            bucket_id=new_id("bkt"),
            account_id=command.account_id,
            unit=command.unit,
            priority=command.priority,
            valid_from=command.valid_from,
            valid_until=command.valid_until,
            services=command.services,
            rating_groups=command.rating_groups,
            label=command.label,
            created_at=self.clock.now(),
        )
        payload = self._credit_payload(
            op="CREATE",
            bucket_id=bucket.bucket_id,
            unit=command.unit,
            amount=command.initial,
            kind=EntryKind.BUCKET_GRANT,
            scope="bucket",
            request_id=command.request_id,
            digest=digest,
        )
        payload["meta"] = bucket_meta(bucket)
        result = await self._credit(
            command.account_id, "bucket", command.request_id, payload, digest, "initial_amount"
        )
        return await self._line(command.account_id, str(result.answer["b"]))

    async def top_up(self, command: TopUp) -> Credited:
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="TOPUP",
            scope="topup",
            unit=command.amount.unit,
            amount=command.amount.amount,
            kind=EntryKind.TOP_UP,
            amount_field="amount",
            reference=command.reference,
        )

    async def adjust(self, command: Adjust) -> Credited:
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="ADJUST",
            scope="adjust",
            unit=command.delta.unit,
            amount=command.delta.amount,
            kind=EntryKind.ADJUSTMENT,
            amount_field="delta",
            reason=command.reason,
        )

    async def close_bucket(self, command: CloseBucket) -> Credited:
        """End a bucket now and forfeit what it has available (ADR 0021)."""
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="CLOSE",
            scope="close",
            unit=None,  # the amount is what the bucket has available
            amount=0,
            kind=EntryKind.EXPIRY,
            amount_field="bucket_id",
            reason=command.reason,
        )

    async def update_bucket(self, command: UpdateBucket) -> Credited:
        """Change a live bucket's priority, end or label; no amount moves (ADR 0021)."""
        changes: dict[str, Any] = {}
        if command.priority is not None:
            changes["p"] = command.priority
        if command.clear_valid_until:
            changes["t"] = 0
        elif command.valid_until is not None:
            changes["t"] = to_ms(command.valid_until)
        if command.label is not None:
            changes["label"] = command.label
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="EDIT",
            scope="edit",
            unit=None,
            amount=0,
            kind=EntryKind.ADJUSTMENT,  # not used: nothing moves
            amount_field="bucket",
            edit=changes,
        )

    async def _bucket_change(
        self,
        command: TopUp | Adjust | CloseBucket | UpdateBucket,
        account_id: str,
        bucket_id: str,
        *,
        op: str,
        scope: str,
        unit: Unit | None,
        amount: int,
        kind: EntryKind,
        amount_field: str,
        reference: str = "",
        reason: str = "",
        edit: dict[str, Any] | None = None,
    ) -> Credited:
        """One operator or customer change to one bucket, idempotent by request id."""
        digest = fingerprint(command)
        replayed, _ = await self._replayed(scope, account_id, command.request_id, digest)
        if replayed is not None:
            return await self._credited(account_id, replayed, bucket_id)
        payload = self._credit_payload(
            op=op,
            bucket_id=bucket_id,
            unit=unit,
            amount=amount,
            kind=kind,
            scope=scope,
            request_id=command.request_id,
            digest=digest,
            reference=reference,
            reason=reason,
        )
        if edit is not None:
            payload["edit"] = edit
        result = await self._credit(
            account_id, scope, command.request_id, payload, digest, amount_field
        )
        return await self._credited_from(account_id, result)

    async def forfeit_expired(self, bucket: Bucket) -> Forfeited:
        """Debit what an ended bucket still has available, as an EXPIRY ledger entry.

        Reserved units stay with their sessions (usage under a grant is always
        debited); what a session gives back later is forfeited by a later call.
        Repeating the call is harmless: the second finds nothing available.
        """
        assert bucket.valid_until is not None
        payload = self._credit_payload(
            op="EXPIRE",
            bucket_id=bucket.bucket_id,
            unit=bucket.unit,
            amount=0,
            kind=EntryKind.EXPIRY,
            scope="expire",
            request_id="",
            digest="",
            reason=f"validity ended {bucket.valid_until.isoformat()}",
        )
        result = await self._credit(bucket.account_id, "expire", "", payload, "", "bucket_id")
        entry_id = str(result.answer.get("e", ""))
        entry = next(
            (ledger_entry_of(e) for e in result.entries if e.entry_id == entry_id and entry_id),
            None,
        )
        return Forfeited(entry, int(result.answer["a"]), int(result.answer["r"]))

    def _credit_payload(
        self,
        *,
        op: str,
        bucket_id: str,
        unit: Unit | None,
        amount: int,
        kind: EntryKind,
        scope: str,
        request_id: str,
        digest: str,
        reference: str = "",
        reason: str = "",
    ) -> dict[str, Any]:
        return {
            "op": op,
            "acct": "",
            "now": to_ms(self.clock.now()),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
            "b": bucket_id,
            "u": unit.key if unit is not None else "",
            "q": str(amount),
            "ek": kind.value,
            "ref": reference,
            "why": reason,
            "scope": scope,
            "rid": request_id,
            "fp": digest,
        }

    async def _credit(
        self,
        account_id: str,
        scope: str,
        request_id: str,
        payload: dict[str, Any],
        digest: str,
        amount_field: str,
    ) -> ScriptResult:
        payload["acct"] = account_id
        # Without a request id the call still needs a key of its own (never a replay).
        key = request_id or new_id("once")
        result = await self._run(
            account_id, lambda: self.store.credit(account_id, scope, key, payload)
        )
        if result.status == "NOBUCKET":
            raise NotFound(
                f"account {account_id} has no bucket {payload['b']!r}",
                reason="BUCKET_NOT_FOUND",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "UNIT":
            raise InvalidArgument.field(amount_field, "is not in the bucket's unit")
        if result.status == "TOOBIG":
            raise InvalidArgument.field(
                amount_field, "would take the bucket past the largest balance (2^52 units)"
            )
        if result.status == "EXISTS":
            raise Unavailable("bucket id collision; retry")
        if result.status == "MAIN":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} is the main bucket of its "
                "currency (the credit line): adjust it instead",
                reason="MAIN_BUCKET",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "BADEND":
            raise InvalidArgument.field(
                "bucket.valid_until", "must be after now and after the bucket's valid_from"
            )
        if result.status == "ENDED":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} has ended: "
                "it takes no credit and no change",
                reason="BUCKET_ENDED",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "LIVE":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} is still valid",
                reason="BUCKET_STILL_VALID",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        self._check_replay(result, digest)
        await self._durable(account_id, result)
        return result

    async def _credited_from(self, account_id: str, result: ScriptResult) -> Credited:
        entry_id = str(result.answer.get("e", ""))
        entry = None
        for journal_entry in result.entries:
            if journal_entry.entry_id == entry_id:
                entry = ledger_entry_of(journal_entry)
        if entry is None and entry_id:
            entry = await asyncio.to_thread(self._entry, entry_id)
        return Credited(entry, await self._line(account_id, str(result.answer["b"])))

    async def _credited(self, account_id: str, entry_id: str, bucket_id: str) -> Credited:
        entry = await asyncio.to_thread(self._entry, entry_id)
        return Credited(
            entry, await self._line(account_id, entry.bucket_id if entry else bucket_id)
        )

    def _entry(self, entry_id: str) -> LedgerEntry | None:
        with self._uow() as uow:
            return uow.ledger.get(entry_id)

    async def _line(self, account_id: str, bucket_id: str) -> BalanceLine:
        balance = await self.balance(account_id)
        for line in balance.lines:
            if line.bucket.bucket_id == bucket_id:
                return line
        raise NotFound(
            f"account {account_id} has no bucket {bucket_id!r}", reason="BUCKET_NOT_FOUND"
        )

    async def balance(self, account_id: str) -> AccountBalance:
        view = await self._require_account(account_id)
        now = self.clock.now()
        buckets = {b.bucket_id: _bucket_of(account_id, b.bucket_id, b.meta) for b in view.buckets}
        amounts = {b.bucket_id: b for b in view.buckets}
        lines = tuple(
            BalanceLine(
                bucket=bucket,
                available=amounts[bucket.bucket_id].available,
                reserved=amounts[bucket.bucket_id].reserved,
                usable=bucket.usable_at(now),
            )
            for bucket in display_order(buckets.values())
        )
        return AccountBalance(
            account_id, _policy_of(account_id, view.fields), _state_of(view.fields), lines
        )

    async def ledger_page(
        self, account_id: str, bucket_id: str | None, after_seq: int, limit: int
    ) -> list[LedgerEntry]:
        def load() -> list[LedgerEntry]:
            with self._uow() as uow:
                if uow.accounts.get(account_id) is None:
                    raise account_not_found(account_id)
                return uow.ledger.page(account_id, bucket_id, after_seq, limit)

        return await asyncio.to_thread(load)

    # -- vouchers ----------------------------------------------------------------------------
    async def create_voucher_batch(self, command: CreateVoucherBatch) -> VoucherBatch:
        digest = fingerprint(command)
        scope = "charging.voucher_batch"

        def create() -> VoucherBatch:
            with self._uow() as uow:
                replayed = uow.replayed_resource(scope, command.request_id, digest)
                if replayed is not None:
                    found = uow.vouchers.batch(replayed)
                    assert found is not None
                    count, expire_time = found
                    codes = tuple(
                        voucher_code(self.options.voucher_key, replayed, i) for i in range(count)
                    )
                    return VoucherBatch(replayed, codes, expire_time)
                batch_id = new_id("vbt")
                codes = tuple(
                    voucher_code(self.options.voucher_key, batch_id, i)
                    for i in range(command.count)
                )
                hashes = [(new_id("vch"), code_hash(code)) for code in codes]
                now = self.clock.now()
                uow.vouchers.add_batch(
                    batch_id, command.label, command.value, command.expire_time, hashes, now
                )
                uow.remember_request(scope, command.request_id, digest, batch_id)
                uow.commit()
                return VoucherBatch(batch_id, codes, command.expire_time)

        return await asyncio.to_thread(create)

    async def redeem_voucher(self, command: RedeemVoucher) -> Credited:
        now = self.clock.now()
        digest = code_hash(command.code)

        def claim() -> tuple[str, Quantity, bool]:
            with self._uow() as uow:
                if uow.accounts.get(command.account_id) is None:
                    raise account_not_found(command.account_id)
                voucher = uow.vouchers.find(digest)
                if voucher is None:
                    raise NotFound("no such voucher code", reason="VOUCHER_NOT_FOUND")
                if voucher.redeemed_by is not None:
                    same = voucher.redeemed_by == command.account_id and (
                        voucher.redeem_request == command.request_id
                    )
                    if not same:
                        raise FailedPrecondition(
                            "this voucher was already redeemed", reason="VOUCHER_ALREADY_REDEEMED"
                        )
                    return voucher.voucher_id, voucher.value, False
                if not voucher.usable_at(now):
                    raise FailedPrecondition("this voucher has expired", reason="VOUCHER_EXPIRED")
                if not uow.vouchers.redeem(
                    voucher.voucher_id, command.account_id, command.request_id, now
                ):
                    raise FailedPrecondition(
                        "this voucher was already redeemed", reason="VOUCHER_ALREADY_REDEEMED"
                    )
                uow.commit()
                return voucher.voucher_id, voucher.value, True

        voucher_id, value, _ = await asyncio.to_thread(claim)
        return await self.credit_voucher(command.account_id, voucher_id, value)

    async def credit_voucher(self, account_id: str, voucher_id: str, value: Quantity) -> Credited:
        """Step two of a redemption (also the repair of one a crash interrupted)."""
        reference = f"voucher:{voucher_id}"

        def committed() -> str | None:
            with self._uow() as uow:
                entry = uow.ledger.by_reference(account_id, reference)
            return entry.entry_id if entry else None

        existing = await asyncio.to_thread(committed)
        if existing is not None:
            return await self._credited(account_id, existing, "")
        if value.unit.is_money:
            payload = self._credit_payload(
                op="TOPUP",
                bucket_id="",
                unit=value.unit,
                amount=value.amount,
                kind=EntryKind.VOUCHER,
                scope="voucher",
                request_id=voucher_id,
                digest=reference,
                reference=reference,
            )
        else:
            bucket = Bucket(
                bucket_id=f"vch-{voucher_id}",
                account_id=account_id,
                unit=value.unit,
                created_at=self.clock.now(),
                label="voucher",
            )
            payload = self._credit_payload(
                op="CREATE",
                bucket_id=bucket.bucket_id,
                unit=value.unit,
                amount=value.amount,
                kind=EntryKind.VOUCHER,
                scope="voucher",
                request_id=voucher_id,
                digest=reference,
                reference=reference,
            )
            payload["meta"] = bucket_meta(bucket)
        result = await self._credit(account_id, "voucher", voucher_id, payload, reference, "code")
        return await self._credited_from(account_id, result)


def ledger_entry_of(entry: JournalEntry) -> LedgerEntry:
    r = entry.record
    return LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        bucket_id=str(r["b"]),
        direction=Direction(str(r["d"])),
        amount=Quantity(Unit.from_key(str(r["u"])), int(r["q"])),
        kind=EntryKind(str(r["ek"])),
        created_at=from_ms(int(r["at"])),
        session_id=str(r.get("s", "")),
        request_number=int(r.get("n", 0)),
        rating_group=int(r.get("g", 0)),
        reference=str(r.get("r", "")),
        reason=str(r.get("why", "")),
    )


def _bucket_of(account_id: str, bucket_id: str, meta: dict[str, Any]) -> Bucket:
    # Lua's cjson writes empty arrays as {}: accept both.
    services = meta.get("sv") or []
    groups = meta.get("rg") or []
    return Bucket(
        bucket_id=bucket_id,
        account_id=account_id,
        unit=Unit.from_key(str(meta["u"])),
        priority=int(meta.get("p", 100)),
        valid_from=from_ms(int(meta["f"])) if meta.get("f") else None,
        valid_until=from_ms(int(meta["t"])) if meta.get("t") else None,
        services=frozenset(str(s) for s in (services if isinstance(services, list) else [])),
        rating_groups=frozenset(int(g) for g in (groups if isinstance(groups, list) else [])),
        label=str(meta.get("label", "")),
        main=bool(meta.get("main")),
        created_at=from_ms(int(meta["o"])) if meta.get("o") else None,
    )


def _policy_of(account_id: str, fields: dict[str, str]) -> AccountPolicy:
    low = fields.get("low")
    return AccountPolicy(
        account_id=account_id,
        mode=BillingMode(fields.get("mode", "prepaid")),
        currency=fields.get("cur", "EUR"),
        credit_limit=int(fields.get("lim", "0") or 0),
        low_balance=int(low) if low else None,
        final_unit_action=FinalUnitAction(fields.get("fua") or "terminate"),
        redirect_address=fields.get("fur", ""),
        restriction_filter_id=fields.get("fuf", ""),
    )


def _state_of(fields: dict[str, str]) -> AccountState:
    try:
        return AccountState(fields.get("st", "active"))
    except ValueError:
        return AccountState.ACTIVE
