"""The grant that exhausts the credit carries the final-unit indication (RFC 4006 5.6.1).

Not only a grant cut short: a full grant after which what is left buys nothing (less
than the price of the next unit) is the last one too, so the network ends the service
when it is used up instead of asking again and getting CREDIT_LIMIT_REACHED without
an indication. Voice here costs 0.10 EUR per started minute (60/60).
"""

from __future__ import annotations

from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.domain.units import TIME
from tests.integration.charging.support import (
    VOICE,
    add_bucket,
    ccr,
    eur,
    ledger_totals,
    live_totals,
    new_account,
    rg,
    seconds,
    send,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE


async def test_a_full_grant_leaving_less_than_the_next_minute_is_the_final_one(
    app: ChargingApp,
) -> None:
    await new_account(app, "acc-f1", balance="0.25")
    first = await send(app, ccr("f1", INITIAL, 0, "acc-f1", rg(VOICE, seconds(60))))
    # 0.15 left after the first minute's 0.10: it buys another minute, not the last grant.
    assert first.rating_groups[0].granted == seconds(60)
    assert first.rating_groups[0].final_unit is None

    update = await send(app, ccr("f1", UPDATE, 1, "acc-f1", rg(VOICE, seconds(60), seconds(60))))
    group = update.rating_groups[0]
    # 0.05 left after this minute's 0.10 buys no started minute: this grant is the last.
    assert group.result is ResultCode.SUCCESS
    assert group.granted == seconds(60)
    assert group.final_unit is not None
    assert await live_totals(app, "acc-f1") == {"main-EUR": (50_000, 100_000)}

    end = await send(app, ccr("f1", TERMINATE, 2, "acc-f1", rg(VOICE, used=seconds(60))))
    assert end.rating_groups[0].cost == eur("0.10")
    assert ledger_totals(app, "acc-f1") == {"main-EUR": 50_000}


async def test_the_last_free_minute_is_final_when_the_money_left_buys_nothing(
    app: ChargingApp,
) -> None:
    await new_account(app, "acc-f2", balance="0.05")
    await add_bucket(app, "acc-f2", TIME, 60, label="free minute")
    first = await send(app, ccr("f2", INITIAL, 0, "acc-f2", rg(VOICE, seconds(120))))
    group = first.rating_groups[0]
    # The bucket's 60 s are granted; the 0.05 EUR behind them buys no started minute.
    assert group.granted == seconds(60)
    assert group.final_unit is not None


async def test_money_left_that_buys_the_next_minute_is_not_final(app: ChargingApp) -> None:
    await new_account(app, "acc-f3", balance="0.10")
    await add_bucket(app, "acc-f3", TIME, 60, label="free minute")
    first = await send(app, ccr("f3", INITIAL, 0, "acc-f3", rg(VOICE, seconds(120))))
    assert first.rating_groups[0].granted == seconds(60)
    assert first.rating_groups[0].final_unit is None
