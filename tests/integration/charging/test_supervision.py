"""Reservations never leak: the sweep returns them after validity + grace (CHG-4)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.common.clock import ManualClock
from tests.integration.charging.support import (
    SMS,
    VOICE,
    ccr,
    ledger_totals,
    live_totals,
    money,
    new_account,
    rg,
    seconds,
    send,
    sms,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE


async def test_vanished_clients_get_every_reservation_returned_within_validity_and_grace(
    app: ChargingApp, clock: ManualClock
) -> None:
    accounts = [f"v{i}" for i in range(20)]
    for account in accounts:
        await new_account(app, account, balance="5.00")
    answers = await asyncio.gather(
        *(
            send(
                app,
                ccr(
                    f"{account}-s{n}", INITIAL, 0, account, rg(VOICE, seconds(60)), rg(SMS, sms(2))
                ),
            )
            for account in accounts
            for n in range(5)
        )
    )
    assert all(a.result is ResultCode.SUCCESS for a in answers)
    for account in accounts:
        assert (await live_totals(app, account))["main-EUR"][1] == 5 * money("0.20").amount
    # The clients vanish here: none of them reports again.

    # Validity 60 s + grace 10 s: one second before, nothing is returned.
    clock.advance(timedelta(seconds=69))
    await app.sweeper.sweep_once()
    assert (await live_totals(app, accounts[0]))["main-EUR"][1] == 5 * money("0.20").amount

    clock.advance(timedelta(seconds=1))
    stats = await app.sweeper.sweep_once()
    assert stats.sessions_closed == 100
    for account in accounts:
        assert await live_totals(app, account) == {"main-EUR": (money("5.00").amount, 0)}
    # Nothing more to visit: the index is empty.
    again = await app.sweeper.sweep_once()
    assert again.accounts == 0


async def test_usage_reported_after_the_sweep_is_still_debited(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "late", balance="1.00")
    await send(app, ccr("l1", INITIAL, 0, "late", rg(VOICE, seconds(60))))
    clock.advance(timedelta(seconds=71))
    await app.sweeper.sweep_once()
    assert await live_totals(app, "late") == {"main-EUR": (money("1.00").amount, 0)}
    update = await send(app, ccr("l1", UPDATE, 1, "late", rg(VOICE, seconds(60), seconds(60))))
    assert update.result is ResultCode.UNKNOWN_SESSION_ID
    assert update.rating_groups[0].cost is not None
    end = await send(app, ccr("l1", TERMINATE, 2, "late", rg(VOICE, used=seconds(10))))
    assert end.result is ResultCode.SUCCESS
    assert ledger_totals(app, "late") == {"main-EUR": money("0.80").amount}


async def test_an_active_session_is_not_swept(app: ChargingApp, clock: ManualClock) -> None:
    await new_account(app, "alive", balance="1.00")
    await send(app, ccr("a1", INITIAL, 0, "alive", rg(VOICE, seconds(60))))
    for number in range(1, 4):
        clock.advance(timedelta(seconds=50))
        await app.sweeper.sweep_once()
        answer = await send(
            app, ccr("a1", UPDATE, number, "alive", rg(VOICE, seconds(60), seconds(50)))
        )
        assert answer.result is ResultCode.SUCCESS
    assert (await live_totals(app, "alive"))["main-EUR"][1] == money("0.10").amount
