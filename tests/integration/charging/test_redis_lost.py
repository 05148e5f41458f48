"""Redis lost under a serving charging: every path answers, and answers UNAVAILABLE.

- A rebuild is shared by every request on the account; the first one's deadline
  must not cancel the others (issue 9 item 1, ADR 0034).
- With Redis stopped, every RPC that needs the live store answers UNAVAILABLE
  with reason ``BALANCE_STORE_UNAVAILABLE``, reads as well as writes (item 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.field_mask_pb2 import FieldMask

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.bootstrap import ChargingApp
from services.charging.entrypoints.grpc_servicer import binding
from services.common.clock import ManualClock
from services.common.grpc_errors import details_of, details_of_status
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import START, charging_app
from tests.integration.charging.test_grpc_api import cc, eur, prepaid, serving, voice

Stub = charging_pb2_grpc.ChargingServiceStub


async def test_a_cancelled_rebuild_leader_leaves_no_waiter_unanswered(
    app: ChargingApp, stub: Stub
) -> None:
    account = "lead-1"
    await prepaid(stub, account, 5)
    for i in range(6):
        opened = await stub.CreditControl(
            cc(f"w{i}", pb.REQUEST_TYPE_INITIAL, 0, account, voice(60))
        )
        assert opened.result_code == pb.RESULT_CODE_SUCCESS
    await app.redis.flushdb()
    await app.store.load()

    # The leader finds the account gone and starts the rebuild, which waits out the
    # fence (200 ms here); its own deadline (50 ms) expires first.
    leader = asyncio.ensure_future(
        stub.CreditControl(
            cc("w0", pb.REQUEST_TYPE_UPDATE, 1, account, voice(60, used=60)), timeout=0.05
        )
    )
    await asyncio.sleep(0.01)
    waiters = [
        asyncio.ensure_future(
            stub.CreditControl(cc(f"w{i}", pb.REQUEST_TYPE_UPDATE, 1, account, voice(60, 30)))
        )
        for i in range(1, 6)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await leader
    assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    async with asyncio.timeout(10):  # without the fix: CANCELLED, or no answer at all
        answers = await asyncio.gather(*waiters)
    assert [a.result_code for a in answers] == [pb.RESULT_CODE_SUCCESS] * 5
    assert all(a.multiple_services[0].granted_units.time_seconds == 60 for a in answers)
    # The rebuild the leader started finished without it: the retried request is answered.
    retried = await stub.CreditControl(
        cc("w0", pb.REQUEST_TYPE_UPDATE, 1, account, voice(60, used=60))
    )
    assert retried.result_code == pb.RESULT_CODE_SUCCESS
    assert app.loader.rebuilt >= 1


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[Stub]:
    async with serving(binding(app.handlers)) as running:
        yield running


@pytest.fixture
async def stopped(database: TestDatabase, tmp_path: Path) -> AsyncIterator[tuple[Stub, str, str]]:
    """A served charging app with an account, a bundle and a voucher code, whose Redis
    was then killed: (stub, bundle id, voucher code)."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = aioredis.Redis.from_url(server.url)
    try:
        async with (
            charging_app(database, client, server.url, clock=ManualClock(START)) as app,
            serving(binding(app.handlers)) as stub,
        ):
            await prepaid(stub, "down-1", 5)
            made = await stub.CreateBucket(
                pb.CreateBucketRequest(
                    bucket=pb.Bucket(account_id="down-1", unit_kind=pb.UNIT_KIND_TIME),
                    initial_amount=pb.Quantity(time_seconds=600),
                )
            )
            batch = pb.CreateVoucherBatchRequest(count=1, value=pb.Quantity(money=eur(1)))
            batch.expire_time.FromDatetime(START.replace(year=2030))
            codes = (await stub.CreateVoucherBatch(batch)).codes
            opened = await stub.CreditControl(
                cc("open-1", pb.REQUEST_TYPE_INITIAL, 0, "down-1", voice(60))
            )
            assert opened.result_code == pb.RESULT_CODE_SUCCESS
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
            yield stub, made.balance.bucket.bucket_id, codes[0]
    finally:
        await client.aclose()
        server.stop()


def _calls(stub: Stub, bucket_id: str, code: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    account = "down-1"
    return {
        "GetBalance": lambda: stub.GetBalance(pb.GetBalanceRequest(account_id=account)),
        "GetAccountPolicy": lambda: stub.GetAccountPolicy(
            pb.GetAccountPolicyRequest(account_id=account)
        ),
        "SetAccountPolicy": lambda: stub.SetAccountPolicy(
            pb.SetAccountPolicyRequest(
                policy=pb.AccountPolicy(
                    account_id=account,
                    billing_mode=pb.BILLING_MODE_PREPAID,
                    currency_code="EUR",
                    low_balance_threshold=eur(1),
                )
            )
        ),
        "CreditControl": lambda: stub.CreditControl(
            cc("open-1", pb.REQUEST_TYPE_UPDATE, 1, account, voice(60, used=60))
        ),
        "CreditControl EVENT": lambda: stub.CreditControl(
            cc(
                "ev-1",
                pb.REQUEST_TYPE_EVENT,
                0,
                account,
                voice(60),
                action=pb.REQUESTED_ACTION_DIRECT_DEBITING,
            )
        ),
        "TopUp": lambda: stub.TopUp(
            pb.TopUpRequest(account_id=account, amount=pb.Quantity(money=eur(1)), request_id="t1")
        ),
        "Adjust": lambda: stub.Adjust(
            pb.AdjustRequest(
                account_id=account,
                bucket_id=bucket_id,
                delta=pb.Quantity(time_seconds=-10),
                reason="goodwill",
                request_id="a1",
            )
        ),
        "CreateBucket": lambda: stub.CreateBucket(
            pb.CreateBucketRequest(
                bucket=pb.Bucket(account_id=account, unit_kind=pb.UNIT_KIND_TIME),
                initial_amount=pb.Quantity(time_seconds=60),
            )
        ),
        "CloseBucket": lambda: stub.CloseBucket(
            pb.CloseBucketRequest(account_id=account, bucket_id=bucket_id, reason="churn")
        ),
        "UpdateBucket": lambda: stub.UpdateBucket(
            pb.UpdateBucketRequest(
                bucket=pb.Bucket(account_id=account, bucket_id=bucket_id, priority=5),
                update_mask=FieldMask(paths=["priority"]),
            )
        ),
        "GetCreditControlSession": lambda: stub.GetCreditControlSession(
            pb.GetCreditControlSessionRequest(account_id=account, session_id="open-1")
        ),
        "ListCreditControlSessions": lambda: stub.ListCreditControlSessions(
            pb.ListCreditControlSessionsRequest(account_id=account)
        ),
        "ReleaseCreditControlSession": lambda: stub.ReleaseCreditControlSession(
            pb.ReleaseCreditControlSessionRequest(
                account_id=account, session_id="open-1", reason="stuck", request_id="rel-1"
            )
        ),
        "RedeemVoucher": lambda: stub.RedeemVoucher(
            pb.RedeemVoucherRequest(account_id=account, code=code, request_id="v1")
        ),
    }


async def test_every_rpc_answers_unavailable_while_redis_is_stopped(
    stopped: tuple[Stub, str, str],
) -> None:
    stub, bucket_id, code = stopped
    wrong: dict[str, str] = {}
    for name, call in _calls(stub, bucket_id, code).items():
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            reason = details_of(error).reason
            if error.code() is not grpc.StatusCode.UNAVAILABLE or (
                reason != "BALANCE_STORE_UNAVAILABLE"
            ):
                wrong[name] = f"{error.code().name} {reason}: {error.details()}"
        else:
            wrong[name] = "answered"
    assert not wrong, wrong


async def test_the_streams_answer_unavailable_while_redis_is_stopped(
    stopped: tuple[Stub, str, str],
) -> None:
    stub, _, _ = stopped
    update = cc("open-1", pb.REQUEST_TYPE_UPDATE, 1, "down-1", voice(60, used=60))

    async def one() -> AsyncIterator[pb.StreamCreditControlRequest]:
        yield pb.StreamCreditControlRequest(request=update)

    (answer,) = [a async for a in stub.StreamCreditControl(one())]
    assert answer.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert details_of_status(answer.error).reason == "BALANCE_STORE_UNAVAILABLE"

    async def batch() -> AsyncIterator[pb.StreamCreditControlBatchesRequest]:
        yield pb.StreamCreditControlBatchesRequest(requests=[update])

    (message,) = [m async for m in stub.StreamCreditControlBatches(batch())]
    (answer,) = message.answers
    assert answer.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert details_of_status(answer.error).reason == "BALANCE_STORE_UNAVAILABLE"
