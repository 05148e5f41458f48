"""The gRPC API of charging: a session through the wire, streaming, pagination, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.type import money_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.bootstrap import ChargingApp
from services.charging.entrypoints.grpc_servicer import binding
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.grpc_server import RunningServer, create_server
from tests.conftest import TEST_TOKEN
from tests.integration.charging.support import VOICE


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    running: RunningServer = await create_server(
        service_name="charging",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[binding(app.handlers)],
    )
    async with open_channel(f"127.0.0.1:{running.port}", TEST_TOKEN) as channel:
        yield charging_pb2_grpc.ChargingServiceStub(channel)
    await running.server.stop(0)


def eur(units: int, nanos: int = 0) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=units, nanos=nanos)


async def prepaid(stub: charging_pb2_grpc.ChargingServiceStub, account: str, units: int) -> None:
    await stub.SetAccountPolicy(
        pb.SetAccountPolicyRequest(
            policy=pb.AccountPolicy(
                account_id=account, billing_mode=pb.BILLING_MODE_PREPAID, currency_code="EUR"
            )
        )
    )
    if units:
        await stub.TopUp(
            pb.TopUpRequest(
                account_id=account,
                amount=pb.Quantity(money=eur(units)),
                request_id=f"top-{account}",
            )
        )


def voice(seconds: int | None = None, used: int | None = None) -> pb.MultipleServicesCreditControl:
    item = pb.MultipleServicesCreditControl(rating_group=VOICE)
    if seconds is not None:
        item.requested_units.time_seconds = seconds
    if used is not None:
        item.used_units.time_seconds = used
    return item


def cc(
    session: str,
    kind: int,
    number: int,
    account: str,
    *groups: pb.MultipleServicesCreditControl,
    action: int = 0,
) -> pb.CreditControlRequest:
    return pb.CreditControlRequest(
        session_id=session,
        request_type=kind,  # type: ignore[arg-type]
        request_number=number,
        account_id=account,
        requested_action=action,  # type: ignore[arg-type]
        multiple_services=list(groups),
    )


async def test_a_prepaid_call_over_grpc(stub: charging_pb2_grpc.ChargingServiceStub) -> None:
    await prepaid(stub, "g1", 1)
    answer = await stub.CreditControl(cc("gs1", pb.REQUEST_TYPE_INITIAL, 0, "g1", voice(60)))
    assert answer.result_code == pb.RESULT_CODE_SUCCESS
    assert answer.diameter_result_code == 2001
    assert answer.multiple_services[0].granted_units.time_seconds == 60
    assert answer.multiple_services[0].validity_time_seconds == 60
    answer = await stub.CreditControl(cc("gs1", pb.REQUEST_TYPE_TERMINATE, 1, "g1", voice(used=61)))
    assert answer.multiple_services[0].cost == eur(0, 200_000_000)
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="g1"))
    (main,) = balance.buckets
    assert main.bucket.main
    assert main.available.money == eur(0, 800_000_000)
    assert balance.billing_mode == pb.BILLING_MODE_PREPAID
    assert balance.state == pb.ACCOUNT_STATE_ACTIVE
    entries = await stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id="g1"))
    assert [e.kind for e in entries.entries] == [pb.ENTRY_KIND_TOP_UP, pb.ENTRY_KIND_USAGE]
    assert entries.entries[1].session_id == "gs1"
    assert entries.entries[1].request_number == 1


async def test_the_ledger_pages(stub: charging_pb2_grpc.ChargingServiceStub) -> None:
    await prepaid(stub, "g2", 0)
    for i in range(5):
        await stub.TopUp(
            pb.TopUpRequest(account_id="g2", amount=pb.Quantity(money=eur(1)), request_id=f"t{i}")
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(account_id="g2", page_size=2, page_token=token)
        )
        seen.extend(e.entry_id for e in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_top_up_with_the_same_request_id_credits_once(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "g3", 0)
    request = pb.TopUpRequest(account_id="g3", amount=pb.Quantity(money=eur(5)), request_id="pay-1")
    first = await stub.TopUp(request)
    second = await stub.TopUp(request)
    assert first.entry.entry_id == second.entry.entry_id
    assert second.balance.available.money == eur(5)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.TopUp(
            pb.TopUpRequest(account_id="g3", amount=pb.Quantity(money=eur(6)), request_id="pay-1")
        )
    assert details_of(failure.value).fields == {"request_id"}


async def test_vouchers_are_redeemed_once(stub: charging_pb2_grpc.ChargingServiceStub) -> None:
    await prepaid(stub, "g4", 0)
    await prepaid(stub, "g5", 0)
    expire = pb.CreateVoucherBatchRequest(
        count=3, value=pb.Quantity(money=eur(10)), label="gift", request_id="batch-1"
    )
    expire.expire_time.GetCurrentTime()
    expire.expire_time.seconds += 10 * 365 * 86400
    batch = await stub.CreateVoucherBatch(expire)
    again = await stub.CreateVoucherBatch(expire)
    assert batch.codes == again.codes
    assert len(batch.codes) == 3
    redeemed = await stub.RedeemVoucher(
        pb.RedeemVoucherRequest(account_id="g4", code=batch.codes[0].lower(), request_id="r1")
    )
    assert redeemed.balance.available.money == eur(10)
    assert redeemed.entry.kind == pb.ENTRY_KIND_VOUCHER
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.RedeemVoucher(pb.RedeemVoucherRequest(account_id="g5", code=batch.codes[0]))
    assert details_of(failure.value).reason == "VOUCHER_ALREADY_REDEEMED"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.RedeemVoucher(
            pb.RedeemVoucherRequest(account_id="g5", code="AAAA-BBBB-CCCC-DDDD")
        )
    assert details_of(failure.value).reason == "VOUCHER_NOT_FOUND"


async def test_streaming_answers_every_request_and_survives_bad_ones(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "g6", 100)

    async def requests() -> AsyncIterator[pb.StreamCreditControlRequest]:
        for i in range(200):
            yield pb.StreamCreditControlRequest(
                request=cc(f"st{i}", pb.REQUEST_TYPE_INITIAL, 0, "g6", voice(60))
            )
        yield pb.StreamCreditControlRequest(
            request=cc("", pb.REQUEST_TYPE_INITIAL, 0, "g6", voice(60))
        )
        yield pb.StreamCreditControlRequest(
            request=cc("st-x", pb.REQUEST_TYPE_INITIAL, 0, "nobody", voice(60))
        )
        for i in range(200):
            yield pb.StreamCreditControlRequest(
                request=cc(f"st{i}", pb.REQUEST_TYPE_TERMINATE, 1, "g6", voice(used=30))
            )

    answers = [a async for a in stub.StreamCreditControl(requests())]
    assert len(answers) == 402
    errors = [a for a in answers if a.HasField("error")]
    assert sorted(e.error.code for e in errors) == [3, 5]  # INVALID_ARGUMENT, NOT_FOUND
    ok = [a for a in answers if a.HasField("response")]
    assert {(a.session_id, a.request_number) for a in ok} == {
        (f"st{i}", n) for i in range(200) for n in (0, 1)
    }
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="g6"))
    assert balance.buckets[0].available.money == eur(80)


async def test_a_stream_can_run_a_whole_session_in_order(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "g7", 1)
    call = stub.StreamCreditControl()
    await call.write(
        pb.StreamCreditControlRequest(request=cc("ss", pb.REQUEST_TYPE_INITIAL, 0, "g7", voice(60)))
    )
    first = await call.read()
    assert first.response.multiple_services[0].granted_units.time_seconds == 60
    await call.write(
        pb.StreamCreditControlRequest(
            request=cc("ss", pb.REQUEST_TYPE_TERMINATE, 1, "g7", voice(used=60))
        )
    )
    second = await call.read()
    assert second.response.multiple_services[0].cost == eur(0, 100_000_000)
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
