"""Property: any sequence of operations keeps credits = available + reserved + debits.

Per bucket, the SQL ledger's credits minus debits always equals what Redis holds
as available plus reserved (after the journal is drained), reservations are never
negative, and once every session has ended nothing stays reserved.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.charging.bootstrap import ChargingApp
from services.charging.domain.accounts import BillingMode
from services.charging.domain.credit_control import RequestedAction, RequestType
from services.charging.domain.units import TIME, Quantity, money_unit, service_units
from services.charging.service_layer.commands import Adjust, CloseBucket, TopUp
from services.common.clock import ManualClock
from tests.integration.charging.support import (
    SMS,
    VOICE,
    add_bucket,
    ccr,
    drain,
    ledger_totals,
    live_totals,
    money,
    new_account,
    rg,
    send,
)

_accounts = itertools.count()

amount = st.integers(min_value=0, max_value=400)
operation = st.one_of(
    st.tuples(st.just("topup"), st.integers(1, 300)),
    st.tuples(
        st.just("bucket"),
        st.sampled_from(["time", "sms"]),
        amount,
        st.integers(0, 3),
        st.integers(-2, 2),
    ),
    st.tuples(st.just("initial"), st.integers(0, 3), st.sampled_from([VOICE, SMS]), amount),
    st.tuples(st.just("update"), st.integers(0, 3), amount, amount),
    st.tuples(st.just("terminate"), st.integers(0, 3), amount),
    st.tuples(st.just("wait"), st.integers(0, 120)),
    st.tuples(
        st.just("event"),
        st.sampled_from(["debit", "refund"]),
        st.sampled_from([VOICE, SMS]),
        amount,
    ),
    st.tuples(st.just("adjust"), st.integers(-200, 200)),
    # ADR 0021: an operator ends a bucket now; the maintenance pass forfeits ended ones.
    st.tuples(st.just("close"), st.integers(0, 5)),
    st.tuples(st.just("forfeit")),
    # ADR 0036: balances checkpointed (every account with an entry since its last one).
    st.tuples(st.just("checkpoint")),
)


def units(group: int, n: int) -> Quantity:
    return Quantity(TIME, n) if group == VOICE else Quantity(service_units("sms"), n)


async def assert_balanced(app: ChargingApp, account: str) -> None:
    await drain(app, account)
    live = await live_totals(app, account)
    ledger = ledger_totals(app, account)
    with app.uow() as uow:  # the whole ledger, without the checkpoint (ADR 0036)
        assert ledger == uow.ledger.sums(account, 0, None)  # type: ignore[attr-defined]
    for bucket, (available, reserved) in live.items():
        assert reserved >= 0, bucket
        assert available + reserved == ledger.get(bucket, 0), (bucket, available, reserved)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mode=st.sampled_from(list(BillingMode)),
    operations=st.lists(operation, min_size=1, max_size=25),
)
async def test_random_operations_keep_credits_equal_to_available_reserved_and_debits(
    app: ChargingApp, clock: ManualClock, mode: BillingMode, operations: list[Any]
) -> None:
    account = f"prop{next(_accounts)}"
    await new_account(
        app,
        account,
        mode=mode,
        balance="1.00",
        credit_limit="0" if mode is BillingMode.PREPAID else "2.00",
    )
    sessions: dict[int, dict[str, Any]] = {}
    made: list[str] = []  # the unit buckets, in the order they were made
    serial = next(_accounts)
    for op in operations:
        kind = op[0]
        if kind == "topup":
            await app.handlers.top_up(
                TopUp(account, Quantity(money_unit("EUR"), money("0.01").amount * op[1]))
            )
        elif kind == "bucket":
            _, unit, size, priority, shift = op
            now = clock.now()
            bucket_id = await add_bucket(
                app,
                account,
                TIME if unit == "time" else service_units("sms"),
                size,
                priority=priority,
                valid_from=now + timedelta(minutes=shift) if shift > 0 else None,
                valid_until=now + timedelta(minutes=shift) if shift < 0 else None,
            )
            made.append(bucket_id)
        elif kind == "initial":
            _, slot, group, want = op
            if slot in sessions and not sessions[slot]["done"]:
                continue
            name = f"p{serial}-{slot}-{len(sessions)}-{want}"
            sessions[slot] = {"name": name, "group": group, "rn": 0, "done": False}
            await send(
                app, ccr(name, RequestType.INITIAL, 0, account, rg(group, units(group, want)))
            )
        elif kind in ("update", "terminate"):
            session = sessions.get(op[1])
            if session is None or session["done"]:
                continue
            session["rn"] += 1
            group = session["group"]
            if kind == "update":
                request = rg(group, units(group, op[3]), units(group, op[2]))
                await send(
                    app, ccr(session["name"], RequestType.UPDATE, session["rn"], account, request)
                )
            else:
                await send(
                    app,
                    ccr(
                        session["name"],
                        RequestType.TERMINATE,
                        session["rn"],
                        account,
                        rg(group, used=units(group, op[2])),
                    ),
                )
                session["done"] = True
        elif kind == "wait":
            clock.advance(timedelta(seconds=op[1]))
            await app.sweeper.sweep_once()
        elif kind == "event":
            _, action, group, want = op
            name = f"e{serial}-{len(sessions)}-{clock.now().timestamp()}-{want}-{action}"
            await send(
                app,
                ccr(
                    name,
                    RequestType.EVENT,
                    0,
                    account,
                    rg(group, units(group, max(want, 1))),
                    action=RequestedAction.DIRECT_DEBITING
                    if action == "debit"
                    else RequestedAction.REFUND_ACCOUNT,
                ),
            )
        elif kind == "adjust" and op[1]:
            await app.handlers.adjust(
                Adjust(
                    account,
                    "main-EUR",
                    Quantity(money_unit("EUR"), money("0.01").amount * op[1]),
                    "property test",
                )
            )
        elif kind == "close" and made:
            await app.handlers.close_bucket(
                CloseBucket(account, made[op[1] % len(made)], "property test")
            )
        elif kind == "forfeit":
            await app.maintenance.forfeit_expired_once()
        elif kind == "checkpoint":
            app.maintenance.checkpoint_once(entries=1)
            clock.advance(timedelta(seconds=1))  # past the settle delay (the 200 ms fence)
            app.maintenance.checkpoint_once(entries=1)
        await assert_balanced(app, account)

    for session in sessions.values():
        if not session["done"]:
            await send(
                app,
                ccr(
                    session["name"],
                    RequestType.TERMINATE,
                    session["rn"] + 1,
                    account,
                    rg(session["group"]),
                ),
            )
    await assert_balanced(app, account)
    assert all(reserved == 0 for _, reserved in (await live_totals(app, account)).values())
    # Once nothing is held, one pass leaves every ended bucket with nothing to draw.
    await app.maintenance.forfeit_expired_once()
    await assert_balanced(app, account)
    balance = await app.handlers.balance(account)
    for line in balance.lines:
        ends = line.bucket.valid_until
        if ends is not None and ends <= clock.now():
            assert (line.available <= 0, line.reserved) == (True, 0), line
