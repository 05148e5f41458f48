"""Credit-control sessions, RFC 4006 stricter (issue 9 item 3, ADR 0035), over gRPC:
unary and the batched stream answer alike.

- UPDATE / TERMINATE of a session never opened: DIAMETER_UNKNOWN_SESSION_ID (5002),
  nothing granted or charged;
- INITIAL with a request number other than 0: INVALID_ARGUMENT naming request_number;
- money asked for in a currency the account holds no bucket of: INVALID_ARGUMENT naming
  the field (not 4012), nothing written;
- a retransmission of an older request gets its original answer;
- sessions read, listed (paginated) and released by an operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from google.type import money_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.bootstrap import ChargingApp
from services.charging.entrypoints.grpc_servicer import binding
from services.common.grpc_errors import details_of, details_of_status
from tests.integration.charging.support import CONTENT, START
from tests.integration.charging.test_grpc_api import cc, eur, prepaid, serving, voice

Stub = charging_pb2_grpc.ChargingServiceStub
INI, U, T = pb.REQUEST_TYPE_INITIAL, pb.REQUEST_TYPE_UPDATE, pb.REQUEST_TYPE_TERMINATE


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[Stub]:
    async with serving(binding(app.handlers)) as running:
        yield running


async def main_balance(stub: Stub, account: str) -> tuple[money_pb2.Money, money_pb2.Money]:
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id=account))
    (main,) = [b for b in balance.buckets if b.bucket.main]
    return main.available.money, main.reserved.money


async def batched(
    stub: Stub, *requests: pb.CreditControlRequest
) -> list[pb.StreamCreditControlResponse]:
    async def one() -> AsyncIterator[pb.StreamCreditControlBatchesRequest]:
        yield pb.StreamCreditControlBatchesRequest(requests=list(requests))

    answers = []
    async for message in stub.StreamCreditControlBatches(one()):
        answers.extend(message.answers)
    return answers


async def test_update_or_terminate_of_a_session_never_opened_is_5002(stub: Stub) -> None:
    await prepaid(stub, "rfc-1", 5)
    for request in (
        cc("never", U, 1, "rfc-1", voice(60, used=30)),
        cc("never", T, 1, "rfc-1", voice(used=30)),
    ):
        answer = await stub.CreditControl(request)
        assert answer.result_code == pb.RESULT_CODE_UNKNOWN_SESSION_ID
        assert answer.diameter_result_code == 5002
        assert not answer.multiple_services
        (streamed,) = await batched(stub, request)
        assert streamed.response.diameter_result_code == 5002
    assert await main_balance(stub, "rfc-1") == (eur(5), eur(0))
    entries = await stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id="rfc-1"))
    assert [e.kind for e in entries.entries] == [pb.ENTRY_KIND_TOP_UP]
    # The session can still be opened properly afterwards.
    opened = await stub.CreditControl(cc("never", INI, 0, "rfc-1", voice(60)))
    assert opened.result_code == pb.RESULT_CODE_SUCCESS


async def test_an_initial_must_carry_request_number_0(stub: Stub) -> None:
    await prepaid(stub, "rfc-2", 5)
    request = cc("init-3", INI, 3, "rfc-2", voice(60))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreditControl(request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f.field for f in details_of(refused.value).violations] == ["request_number"]
    (streamed,) = await batched(stub, request)
    assert [f.field for f in details_of_status(streamed.error).violations] == ["request_number"]
    assert await main_balance(stub, "rfc-2") == (eur(5), eur(0))


async def test_money_in_a_currency_the_account_does_not_hold_is_a_bad_request(
    stub: Stub,
) -> None:
    await prepaid(stub, "rfc-3", 5)
    usd = pb.MultipleServicesCreditControl(rating_group=CONTENT)
    usd.requested_units.money.CopyFrom(money_pb2.Money(currency_code="USD", units=1))
    request = cc("usd-1", INI, 0, "rfc-3", usd)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreditControl(request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = details_of(refused.value).violations
    assert [f.field for f in violations] == ["multiple_services[0].requested_units"]
    assert "USD" in violations[0].description
    (streamed,) = await batched(stub, request)
    assert streamed.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [f.field for f in details_of_status(streamed.error).violations] == [
        "multiple_services[0].requested_units"
    ]
    # Nothing was written: the same session opens in the account's currency.
    eur_item = pb.MultipleServicesCreditControl(rating_group=CONTENT)
    eur_item.requested_units.money.CopyFrom(eur(1))
    opened = await stub.CreditControl(cc("usd-1", INI, 0, "rfc-3", eur_item))
    assert opened.result_code == pb.RESULT_CODE_SUCCESS
    assert await main_balance(stub, "rfc-3") == (eur(4), eur(1))


async def test_an_older_request_retransmitted_gets_its_original_answer(stub: Stub) -> None:
    await prepaid(stub, "rfc-4", 5)
    first = [
        await stub.CreditControl(cc("old", INI, 0, "rfc-4", voice(60))),
        await stub.CreditControl(cc("old", U, 1, "rfc-4", voice(60, used=60))),
        await stub.CreditControl(cc("old", U, 2, "rfc-4", voice(60, used=60))),
    ]
    before = await main_balance(stub, "rfc-4")
    again = [
        await stub.CreditControl(cc("old", INI, 0, "rfc-4", voice(60))),
        await stub.CreditControl(cc("old", U, 1, "rfc-4", voice(60, used=60))),
        await stub.CreditControl(cc("old", U, 2, "rfc-4", voice(60, used=60))),
    ]
    assert again == first
    streamed = await batched(stub, cc("old", U, 1, "rfc-4", voice(60, used=60)))
    assert streamed[0].response == first[1]
    assert await main_balance(stub, "rfc-4") == before
    # A number never answered is still out of order.
    closed = await stub.CreditControl(cc("old", T, 4, "rfc-4", voice(used=10)))
    assert closed.result_code == pb.RESULT_CODE_SUCCESS
    skipped = await stub.CreditControl(cc("old", U, 3, "rfc-4", voice(60, used=60)))
    assert skipped.result_code == pb.RESULT_CODE_OUT_OF_ORDER


async def test_sessions_are_read_listed_and_released(app: ChargingApp, stub: Stub) -> None:
    await prepaid(stub, "rfc-5", 5)
    for name in ("s-a", "s-b", "s-c", "s-d"):
        opened = await stub.CreditControl(cc(name, INI, 0, "rfc-5", voice(60)))
        assert opened.result_code == pb.RESULT_CODE_SUCCESS
    await stub.CreditControl(cc("s-a", U, 1, "rfc-5", voice(60, used=45)))
    await stub.CreditControl(cc("s-d", T, 1, "rfc-5", voice(used=20)))

    got = (
        await stub.GetCreditControlSession(
            pb.GetCreditControlSessionRequest(account_id="rfc-5", session_id="s-a")
        )
    ).session
    assert got.state == pb.CREDIT_CONTROL_SESSION_STATE_OPEN
    assert got.last_request_number == 1
    assert got.last_request_type == pb.REQUEST_TYPE_UPDATE
    (group,) = got.rating_groups
    assert group.granted_units.time_seconds == 60
    assert group.used_units.time_seconds == 45
    assert group.valid_until.ToDatetime().replace(tzinfo=START.tzinfo) == START + timedelta(
        seconds=60
    )
    assert got.release_time.ToDatetime().replace(tzinfo=START.tzinfo) == START + timedelta(
        seconds=70
    )

    listed: list[str] = []
    token = ""
    while True:
        page = await stub.ListCreditControlSessions(
            pb.ListCreditControlSessionsRequest(account_id="rfc-5", page_size=1, page_token=token)
        )
        listed.extend(s.session_id for s in page.sessions)
        token = page.next_page_token
        if not token:
            break
    assert listed == ["s-a", "s-b", "s-c"]  # s-d terminated

    release = pb.ReleaseCreditControlSessionRequest(
        account_id="rfc-5", session_id="s-b", reason="stuck after a switch restart", request_id="r1"
    )
    released = (await stub.ReleaseCreditControlSession(release)).session
    assert released.state == pb.CREDIT_CONTROL_SESSION_STATE_RELEASED
    assert not released.rating_groups[0].HasField("granted_units")
    assert (await stub.ReleaseCreditControlSession(release)).session == released  # replayed
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.ReleaseCreditControlSession(
            pb.ReleaseCreditControlSessionRequest(
                account_id="rfc-5", session_id="s-b", reason="twice", request_id="r2"
            )
        )
    assert details_of(again.value).reason == "SESSION_NOT_OPEN"
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.ReleaseCreditControlSession(
            pb.ReleaseCreditControlSessionRequest(
                account_id="rfc-5", session_id="nobody", reason="x"
            )
        )
    assert details_of(unknown.value).reason == "SESSION_NOT_FOUND"
    page = await stub.ListCreditControlSessions(
        pb.ListCreditControlSessionsRequest(account_id="rfc-5")
    )
    assert [s.session_id for s in page.sessions] == ["s-a", "s-c"]

    # What s-b held went back; s-a and s-c still hold 0.10 EUR each.
    _, reserved = await main_balance(stub, "rfc-5")
    assert reserved == eur(0, 200_000_000)
    # A late report of the released session is still debited; an UPDATE is refused.
    refused = await stub.CreditControl(cc("s-b", U, 1, "rfc-5", voice(60, used=30)))
    assert refused.result_code == pb.RESULT_CODE_UNKNOWN_SESSION_ID
    assert (await main_balance(stub, "rfc-5"))[0] == eur(4, 500_000_000)

    # A rebuild from SQL does not hold the released session's reservation again.
    await app.redis.flushdb()
    await app.store.load()
    for _ in range(100):
        try:
            rebuilt = await main_balance(stub, "rfc-5")
            break
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:  # the rebuild fence
                raise
            await asyncio.sleep(0.05)
    assert rebuilt[1] == eur(0, 200_000_000)
    after = (
        await stub.GetCreditControlSession(
            pb.GetCreditControlSessionRequest(account_id="rfc-5", session_id="s-b")
        )
    ).session
    assert after.state == pb.CREDIT_CONTROL_SESSION_STATE_RELEASED
