"""The Lua scripts do what the domain's executable specification (``Wallet``) says.

Random accounts (mode, credit limit, unit and money buckets with priorities,
validity windows and scopes) and random sessions run both through
``credit_control.lua`` on a real Redis and through ``domain.wallet.Wallet``; the
grants and every bucket's available and reserved amounts must agree.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.charging.adapters.redis_store import RedisBalanceStore
from services.charging.domain.accounts import AccountPolicy, BillingMode
from services.charging.domain.buckets import Bucket
from services.charging.domain.instants import to_ms
from services.charging.domain.units import TIME, money_unit
from services.charging.domain.wallet import (
    Grant,
    RatingGroupCharge,
    Reservation,
    Wallet,
    bucket_meta,
)
from services.charging.service_layer.ports import Snapshot

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
# A factor that takes the amounts into the 10^14s, with no trailing zeros to hide behind.
SCALE = 1_000_000_000_007
_ids = itertools.count()

bucket_spec = st.tuples(
    st.sampled_from(["t", "m"]),
    st.integers(0, 500),  # amount
    st.integers(0, 3),  # priority
    st.sampled_from([None, -1, 1]),  # validity: none, ended, not yet started
    st.sampled_from([None, "voice", "data"]),  # service scope
)
step = st.tuples(
    st.sampled_from(["U", "T"]),
    st.integers(0, 200),  # used
    st.integers(0, 400),  # cost of used
    st.integers(0, 200),  # wanted
    st.integers(0, 400),  # price of wanted
    st.integers(0, 100),  # price of the unit after the grant
    st.integers(0, 100),  # price of the first money unit
)


def build(mode: BillingMode, limit: int, main: int, specs: list[Any]) -> tuple[Wallet, Snapshot]:
    policy = AccountPolicy(
        "x", mode, "EUR", credit_limit=0 if mode is BillingMode.PREPAID else limit
    )
    buckets = [Bucket("main-EUR", "x", money_unit("EUR"), main=True, created_at=NOW)]
    amounts = {"main-EUR": main}
    for i, (kind, amount, priority, validity, scope) in enumerate(specs):
        buckets.append(
            Bucket(
                f"b{i}",
                "x",
                TIME if kind == "t" else money_unit("EUR"),
                priority=priority,
                valid_until=NOW - timedelta(seconds=1) if validity == -1 else None,
                valid_from=NOW + timedelta(seconds=1) if validity == 1 else None,
                services=frozenset({scope}) if scope else frozenset(),
                created_at=NOW - timedelta(seconds=i),
            )
        )
        amounts[f"b{i}"] = amount
    wallet = Wallet(policy, buckets)
    for bucket_id, amount in amounts.items():
        wallet.amounts[bucket_id].available = amount
    t80, _ = policy.credit_thresholds
    snapshot = Snapshot(
        account={
            "mode": mode.value,
            "cur": "EUR",
            "st": "active",
            "stv": "0",
            "lim": str(policy.credit_limit),
            "low": "",
            "t80": str(t80),
            "fua": "terminate",
            "fur": "",
            "fuf": "",
            "pver": "1",
        },
        buckets=[
            {"id": b.bucket_id, "meta": bucket_meta(b), "a": str(amounts[b.bucket_id])}
            for b in buckets
        ],
    )
    return wallet, snapshot


def payload(
    kind: str, number: int, used: int, cost: int, want: int, price: int, nxt: int, first: int
) -> dict[str, Any]:
    return {
        "t": kind,
        "sid": "s",
        "rn": number,
        "acct": "x",
        "now": to_ms(NOW),
        "sweep": to_ms(NOW) + 60_000,
        "win": 60,
        "jd": 1000,
        "rgs": [
            {
                "g": 1,
                "svc": "voice",
                "u": "t",
                "fr": 0,
                "w": want,
                "p": price,
                "mc": "EUR",
                "x": used,
                "c": cost,
                "rf": 0,
                "pn": nxt,
                "p1": first,
            }
        ],
    }


def charge(
    used: int, cost: int, want: int, price: int, nxt: int = 0, first: int = 0
) -> RatingGroupCharge:
    return RatingGroupCharge(
        1,
        "voice",
        TIME,
        wanted=want,
        price_of_wanted=price,
        price_currency="EUR",
        used=used,
        cost_of_used=cost,
        price_of_next=nxt,
        price_of_first=first,
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(list(BillingMode)),
    limit=st.integers(0, 300),
    main=st.integers(0, 300),
    specs=st.lists(bucket_spec, max_size=5),
    first=st.tuples(st.integers(1, 200), st.integers(1, 400)),
    steps=st.lists(step, max_size=4),
    scale=st.sampled_from([1, SCALE]),
)
async def test_lua_and_wallet_agree(
    redis_client: aioredis.Redis,
    mode: BillingMode,
    limit: int,
    main: int,
    specs: list[Any],
    first: tuple[int, int],
    steps: list[Any],
    scale: int,
) -> None:
    # Every amount times SCALE as well: the scripts must stay exact up to the bounds
    # (10^15 per request, 2^52 per bucket), far past cjson's 14 digits.
    limit, main = limit * scale, main * scale
    specs = [(kind, amount * scale, *rest) for kind, amount, *rest in specs]
    first = (first[0] * scale, first[1] * scale)
    steps = [(kind, *(n * scale for n in numbers)) for kind, *numbers in steps]
    store = RedisBalanceStore(redis_client)
    account = f"diff{next(_ids)}"
    wallet, snapshot = build(mode, limit, main, specs)
    await store.restore(
        account, snapshot, fresh=True, fence_ms=0, snap_ms=0, epoch="e", window_s=60, now_ms=0
    )

    async def lua(body: dict[str, Any]) -> dict[str, Any]:
        return (await store.credit_control(account, "s", body)).answer

    async def compare(answer: dict[str, Any], grant: Any) -> None:
        view = await store.read_account(account)
        assert view is not None
        live = {b.bucket_id: (b.available, b.reserved) for b in view.buckets}
        spec = {k: (v.available, v.reserved) for k, v in wallet.amounts.items()}
        assert live == spec
        if grant is not None:
            (lua_rg,) = answer["rgs"]
            assert int(lua_rg["gu"]) == grant.granted
            assert lua_rg["rc"] == grant.result
            assert bool(lua_rg["fin"]) == grant.final

    want, price = first
    reservation: Reservation | None
    grant: Grant | None
    reservation, grant = wallet.reserve(charge(0, -1, want, price, want // 7, price // 3), NOW)
    await compare(await lua(payload("I", 0, -1, -1, want, price, want // 7, price // 3)), grant)
    for number, (kind, used, cost, want, price, nxt, one) in enumerate(steps, start=1):
        wallet.settle(charge(used, cost, want, price), reservation, NOW)
        grant = None
        if kind == "U":
            reservation, grant = wallet.reserve(charge(used, cost, want, price, nxt, one), NOW)
        else:
            reservation = None
        await compare(await lua(payload(kind, number, used, cost, want, price, nxt, one)), grant)
        if kind == "T":
            break
