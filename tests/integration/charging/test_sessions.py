"""Credit-control sessions end to end on a real Redis and SQL (CHG-1, CHG-2, CHG-5..7)."""

from __future__ import annotations

from services.charging.bootstrap import ChargingApp
from services.charging.domain.accounts import BillingMode, FinalUnitAction
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.domain.units import TIME, scaled_money
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


async def test_prepaid_call_reserves_debits_and_releases_money(app: ChargingApp) -> None:
    await new_account(app, "acc-1", balance="1.00")
    first = await send(app, ccr("s1", INITIAL, 0, "acc-1", rg(VOICE, seconds(60))))
    assert first.result is ResultCode.SUCCESS
    granted = first.rating_groups[0]
    assert granted.granted == seconds(60)
    assert granted.validity_seconds == 60
    assert await live_totals(app, "acc-1") == {"main-EUR": (900_000, 100_000)}

    update = await send(app, ccr("s1", UPDATE, 1, "acc-1", rg(VOICE, seconds(60), seconds(60))))
    assert update.rating_groups[0].cost == eur("0.10")
    end = await send(app, ccr("s1", TERMINATE, 2, "acc-1", rg(VOICE, used=seconds(30))))
    assert end.result is ResultCode.SUCCESS
    assert end.rating_groups[0].cost == eur("0.10")  # a started minute is charged
    assert await live_totals(app, "acc-1") == {"main-EUR": (800_000, 0)}
    assert ledger_totals(app, "acc-1") == {"main-EUR": 800_000}


async def test_free_minutes_are_used_before_money(app: ChargingApp) -> None:
    await new_account(app, "acc-2", balance="5.00")
    minutes = await add_bucket(app, "acc-2", TIME, 90, priority=10)
    answer = await send(app, ccr("s2", INITIAL, 0, "acc-2", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].granted == seconds(60)
    totals = await live_totals(app, "acc-2")
    assert totals[minutes] == (30, 60)
    assert totals["main-EUR"] == (5_000_000, 0)
    # The rest of the minutes, then money.
    answer = await send(app, ccr("s2", UPDATE, 1, "acc-2", rg(VOICE, seconds(60), seconds(60))))
    assert answer.rating_groups[0].granted == seconds(30)
    assert answer.rating_groups[0].final_unit is None  # money follows
    answer = await send(app, ccr("s2", UPDATE, 2, "acc-2", rg(VOICE, seconds(60), seconds(30))))
    assert answer.rating_groups[0].granted == seconds(60)
    totals = await live_totals(app, "acc-2")
    assert totals[minutes] == (0, 0)
    assert totals["main-EUR"] == (4_900_000, 100_000)


async def test_repeated_request_gets_the_first_answer_and_charges_once(app: ChargingApp) -> None:
    await new_account(app, "acc-3", balance="1.00")
    await send(app, ccr("s3", INITIAL, 0, "acc-3", rg(VOICE, seconds(60))))
    update = ccr("s3", UPDATE, 1, "acc-3", rg(VOICE, seconds(60), seconds(60)))
    answers = [await send(app, update) for _ in range(5)]
    assert all(a == answers[0] for a in answers)
    assert ledger_totals(app, "acc-3") == {"main-EUR": 900_000}
    stale = await send(app, ccr("s3", UPDATE, 0, "acc-3", rg(VOICE, seconds(60), seconds(60))))
    assert stale.result is ResultCode.OUT_OF_ORDER
    assert ledger_totals(app, "acc-3") == {"main-EUR": 900_000}


async def test_last_grant_carries_the_final_unit_indication(app: ChargingApp) -> None:
    await new_account(app, "acc-4", balance="0.25")
    answer = await send(app, ccr("s4", INITIAL, 0, "acc-4", rg(VOICE, seconds(120))))
    group = answer.rating_groups[0]
    assert group.granted == seconds(120)
    # The 0.05 left after this grant's 0.20 buys no started minute: this grant is the last
    # (RFC 4006: the grant that exhausts the credit carries the final-unit indication).
    assert group.final_unit is not None
    answer = await send(app, ccr("s4", UPDATE, 1, "acc-4", rg(VOICE, seconds(120), seconds(120))))
    group = answer.rating_groups[0]
    # A network that asks again anyway: nothing granted, credit limit reached.
    assert group.result is ResultCode.CREDIT_LIMIT_REACHED
    assert group.granted is None


async def test_partial_money_grant_is_final(app: ChargingApp) -> None:
    await new_account(app, "acc-5", balance="0.30")
    answer = await send(app, ccr("s5", INITIAL, 0, "acc-5", rg(VOICE, seconds(600))))
    group = answer.rating_groups[0]
    assert group.granted == seconds(180)
    assert group.final_unit is not None
    assert group.final_unit.action is FinalUnitAction.TERMINATE


async def test_postpaid_runs_to_the_credit_limit(app: ChargingApp) -> None:
    await new_account(app, "acc-6", mode=BillingMode.POSTPAID, credit_limit="0.20")
    answer = await send(app, ccr("s6", INITIAL, 0, "acc-6", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].granted == seconds(60)
    answer = await send(app, ccr("s6", UPDATE, 1, "acc-6", rg(VOICE, seconds(120), seconds(60))))
    assert answer.rating_groups[0].granted == seconds(60)
    assert answer.rating_groups[0].final_unit is not None
    await send(app, ccr("s6", TERMINATE, 2, "acc-6", rg(VOICE, used=seconds(60))))
    assert ledger_totals(app, "acc-6") == {"main-EUR": -scaled_money(eur("0.20"))}
    refused = await send(app, ccr("s7", INITIAL, 0, "acc-6", rg(VOICE, seconds(60))))
    assert refused.rating_groups[0].result is ResultCode.CREDIT_LIMIT_REACHED


async def test_session_ids_beyond_ascii_are_charged_once(app: ChargingApp) -> None:
    # The scripts' payloads are raw UTF-8 since ADR 0016 (json wrote \u escapes):
    # the session must still be found again by the same id, and a retry answered
    # from it.
    await new_account(app, "acc-ü", balance="1.00")
    session = "sess-é-漢字-😀"
    first = await send(app, ccr(session, INITIAL, 0, "acc-ü", rg(VOICE, seconds(60))))
    assert first.result is ResultCode.SUCCESS
    update = ccr(session, UPDATE, 1, "acc-ü", rg(VOICE, seconds(60), seconds(60)))
    answer = await send(app, update)
    retry = await send(app, update)
    assert retry == answer
    assert answer.rating_groups[0].cost == eur("0.10")
    assert await live_totals(app, "acc-ü") == {"main-EUR": (800_000, 100_000)}
    assert ledger_totals(app, "acc-ü") == {"main-EUR": 900_000}
