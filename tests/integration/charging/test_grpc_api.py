"""The gRPC API of charging: a session through the wire, streaming (one request or a batch
per message), pagination, errors."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import money_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import CreditControlAnswer, CreditControlRequest
from services.charging.entrypoints.grpc_servicer import SERVICE_NAME, ChargingServicer, binding
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of, details_of_status
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from tests.conftest import TEST_TOKEN
from tests.integration.charging.support import VOICE


@asynccontextmanager
async def serving(
    service: ServiceBinding,
) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    running: RunningServer = await create_server(
        service_name="charging",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[service],
    )
    async with open_channel(f"127.0.0.1:{running.port}", TEST_TOKEN) as channel:
        yield charging_pb2_grpc.ChargingServiceStub(channel)
    await running.server.stop(0)


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    async with serving(binding(app.handlers)) as running:
        yield running


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


# -- StreamCreditControlBatches ---------------------------------------------------------------
INITIAL, TERMINATE = pb.REQUEST_TYPE_INITIAL, pb.REQUEST_TYPE_TERMINATE
READ_TIMEOUT_S = 20  # an answer held back fails the test instead of hanging it
Answers = list[pb.StreamCreditControlResponse]


def batch(requests: Iterable[pb.CreditControlRequest]) -> pb.StreamCreditControlBatchesRequest:
    return pb.StreamCreditControlBatchesRequest(requests=list(requests))


async def read_answers(call: Any, count: int) -> tuple[Answers, int]:
    """Read reply messages until ``count`` answers came: the answers, and how many
    messages carried them."""
    answers: Answers = []
    messages = 0
    while len(answers) < count:
        reply = await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
        assert reply is not grpc.aio.EOF, f"stream ended after {len(answers)} answers"
        assert 1 <= len(reply.answers) <= 1000
        answers.extend(reply.answers)
        messages += 1
    return answers, messages


async def end(call: Any) -> None:
    """Close the writing side and check that no answer is left to come."""
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF


def keys(answers: Answers) -> list[tuple[str, int]]:
    return sorted((a.session_id, a.request_number) for a in answers)


async def test_batches_answer_each_request_once_with_ready_answers_sent_together(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    # 100 EUR at 0.10 EUR per started minute: exactly 1,000 one-minute reservations.
    await prepaid(stub, "b1", 100)
    call = stub.StreamCreditControlBatches()
    await call.write(batch(cc(f"b{i}", INITIAL, 0, "b1", voice(60)) for i in range(1000)))
    answers, messages = await read_answers(call, 1000)
    assert keys(answers) == sorted((f"b{i}", 0) for i in range(1000))
    assert {a.response.multiple_services[0].granted_units.time_seconds for a in answers} == {60}
    assert messages < 1000  # answers that completed together travelled together
    for start, size in ((0, 1), (1, 299), (300, 700)):
        await call.write(
            batch(
                cc(f"b{i}", TERMINATE, 1, "b1", voice(used=30)) for i in range(start, start + size)
            )
        )
    answers, _ = await read_answers(call, 1000)
    assert keys(answers) == sorted((f"b{i}", 1) for i in range(1000))
    assert {a.response.result_code for a in answers} == {pb.RESULT_CODE_SUCCESS}
    await end(call)
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="b1"))
    assert balance.buckets[0].available.money == eur(0)
    assert balance.buckets[0].reserved.money == eur(0)


async def test_a_request_repeated_within_and_across_batches_is_charged_once(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "b2", 10)
    call = stub.StreamCreditControlBatches()
    initials = [cc(f"r{i}", INITIAL, 0, "b2", voice(60)) for i in range(10)]
    await call.write(batch([*initials, initials[0], initials[0]]))
    terminates = [cc(f"r{i}", TERMINATE, 1, "b2", voice(used=60)) for i in range(10)]
    answers, _ = await read_answers(call, 12)
    await call.write(batch(terminates))
    await call.write(batch(terminates[:5]))  # the gateway timed out and sends them again
    await call.write(batch([*terminates[5:], *terminates[5:]]))
    answers += (await read_answers(call, 25))[0]
    await end(call)
    by_request: defaultdict[tuple[str, int], Answers] = defaultdict(list)
    for answer in answers:
        by_request[(answer.session_id, answer.request_number)].append(answer)
    copies = {key: len(same) for key, same in by_request.items()}
    assert copies == {
        **{(f"r{i}", 0): 1 for i in range(1, 10)},
        ("r0", 0): 3,
        **{(f"r{i}", 1): 2 for i in range(5)},
        **{(f"r{i}", 1): 3 for i in range(5, 10)},
    }
    for same in by_request.values():
        assert same[0].response.result_code == pb.RESULT_CODE_SUCCESS
        assert all(a == same[0] for a in same)
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="b2"))
    assert balance.buckets[0].available.money == eur(9)  # ten minutes at 0.10 EUR, once each
    entries = await stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id="b2"))
    assert [e.kind for e in entries.entries].count(pb.ENTRY_KIND_USAGE) == 10


async def test_bad_requests_in_a_batch_get_their_errors_and_the_others_are_served(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "b3", 10)
    no_group = voice(60)
    no_group.rating_group = 0
    requests = [
        cc("g0", INITIAL, 0, "b3", voice(60)),
        cc("", INITIAL, 0, "b3", voice(60)),
        cc("g1", INITIAL, 0, "b3", voice(60)),
        cc("x1", INITIAL, 3, "b3", no_group),
        cc("x2", INITIAL, 0, "b3"),
        cc("x3", INITIAL, 0, "nobody", voice(60)),
        cc("g2", INITIAL, 0, "b3", voice(60)),
    ]
    answers = [
        answer
        async for reply in stub.StreamCreditControlBatches(iter([batch(requests)]))
        for answer in reply.answers
    ]
    assert keys(answers) == sorted((r.session_id, r.request_number) for r in requests)
    errors = {a.session_id: details_of_status(a.error) for a in answers if a.HasField("error")}
    assert {key: (e.code, e.fields) for key, e in errors.items()} == {
        "": (grpc.StatusCode.INVALID_ARGUMENT, {"session_id"}),
        "x1": (  # and an INITIAL's number must be 0 (RFC 4006, ADR 0035)
            grpc.StatusCode.INVALID_ARGUMENT,
            {"multiple_services[0].rating_group", "request_number"},
        ),
        "x2": (grpc.StatusCode.INVALID_ARGUMENT, {"multiple_services"}),
        "x3": (grpc.StatusCode.NOT_FOUND, set()),
    }
    assert errors["x3"].reason == "ACCOUNT_NOT_FOUND"
    served = [a for a in answers if a.HasField("response")]
    assert {a.session_id for a in served} == {"g0", "g1", "g2"}
    assert {a.response.result_code for a in served} == {pb.RESULT_CODE_SUCCESS}
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="b3"))
    assert balance.buckets[0].reserved.money == eur(0, 300_000_000)


async def test_an_empty_or_oversized_batch_is_refused_whole_and_the_stream_goes_on(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "b4", 200)
    call = stub.StreamCreditControlBatches()
    await call.write(batch([]))
    await call.write(batch(cc(f"o{i}", INITIAL, 0, "b4", voice(60)) for i in range(1001)))
    await call.write(batch([cc("after", INITIAL, 0, "b4", voice(60))]))
    answers, _ = await read_answers(call, 3)
    await end(call)
    refused = [a for a in answers if a.HasField("error")]
    assert [(a.session_id, a.request_number) for a in refused] == [("", 0), ("", 0)]
    for answer in refused:
        details = details_of_status(answer.error)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.fields == {"requests"}
    (served,) = [a for a in answers if a.HasField("response")]
    assert served.session_id == "after"
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="b4"))
    assert balance.buckets[0].reserved.money == eur(0, 100_000_000)  # "after" alone


async def test_a_slow_request_holds_back_no_other_answer_of_its_batch(
    app: ChargingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    handle = app.handlers.credit_control

    async def slow_for_one_session(request: CreditControlRequest) -> CreditControlAnswer:
        if request.session_id == "slow":
            await release.wait()
        return await handle(request)

    monkeypatch.setattr(app.handlers, "credit_control", slow_for_one_session)
    # Three requests in flight at most: the slow one keeps one slot, the rest share two.
    servicer = ChargingServicer(app.handlers, max_in_flight=3)
    add = charging_pb2_grpc.add_ChargingServiceServicer_to_server
    async with serving(ServiceBinding(SERVICE_NAME, add, servicer)) as stub:
        await prepaid(stub, "b5", 10)
        minutes = {"slow": 10, **{f"fast{i}": i for i in range(1, 9)}}
        call = stub.StreamCreditControlBatches()
        await call.write(batch(cc(s, INITIAL, 0, "b5", voice(60 * m)) for s, m in minutes.items()))
        early, _ = await read_answers(call, 8)
        assert {a.session_id for a in early} == set(minutes) - {"slow"}
        release.set()
        late, _ = await read_answers(call, 1)
        await end(call)
    assert late[0].session_id == "slow"
    for answer in [*early, *late]:  # each answer is its own request's
        assert answer.response.session_id == answer.session_id
        granted = answer.response.multiple_services[0].granted_units.time_seconds
        assert granted == 60 * minutes[answer.session_id]


async def test_close_bucket_through_the_wire_forfeits_with_an_expiry_entry(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "cl1", 1)
    made = await stub.CreateBucket(
        pb.CreateBucketRequest(
            bucket=pb.Bucket(account_id="cl1", unit_kind=pb.UNIT_KIND_TIME, label="bundle"),
            initial_amount=pb.Quantity(time_seconds=600),
        )
    )
    bucket_id = made.balance.bucket.bucket_id
    closed = await stub.CloseBucket(
        pb.CloseBucketRequest(account_id="cl1", bucket_id=bucket_id, reason="downgrade")
    )
    assert closed.entry.kind == pb.ENTRY_KIND_EXPIRY
    assert closed.entry.direction == pb.ENTRY_DIRECTION_DEBIT
    assert closed.entry.amount.time_seconds == 600
    assert closed.entry.reason == "downgrade"
    assert closed.balance.available.time_seconds == 0
    assert not closed.balance.usable
    assert closed.balance.bucket.HasField("valid_until")
    entries = await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(account_id="cl1", bucket_id=bucket_id)
    )
    assert [e.kind for e in entries.entries] == [
        pb.ENTRY_KIND_BUCKET_GRANT,
        pb.ENTRY_KIND_EXPIRY,
    ]


async def test_update_bucket_through_the_wire_changes_only_the_masked_fields(
    stub: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await prepaid(stub, "up1", 1)
    made = await stub.CreateBucket(
        pb.CreateBucketRequest(
            bucket=pb.Bucket(
                account_id="up1", unit_kind=pb.UNIT_KIND_TIME, priority=30, label="bundle"
            ),
            initial_amount=pb.Quantity(time_seconds=600),
        )
    )
    bucket_id = made.balance.bucket.bucket_id
    updated = await stub.UpdateBucket(
        pb.UpdateBucketRequest(
            bucket=pb.Bucket(
                account_id="up1", bucket_id=bucket_id, priority=7, label="not applied"
            ),
            update_mask=FieldMask(paths=["priority"]),
        )
    )
    assert updated.balance.bucket.priority == 7
    assert updated.balance.bucket.label == "bundle"
    assert updated.balance.available.time_seconds == 600
    assert not updated.balance.bucket.HasField("valid_until")
