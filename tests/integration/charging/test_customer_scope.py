"""Charging checks the customer scope a call carries, itself (issue 14 item 2, ADR 0073).

Over gRPC, as the gateway calls it for a logged-in customer (``x-reckon-customer-id``):
charging learns whose an account is from accounts' AccountCreated; another customer's
account answers exactly as an unknown one (code, reason, message), nothing moves,
and what is never a customer's (credit control, catalog, voucher batches) is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.bootstrap import ChargingApp
from services.charging.entrypoints.grpc_servicer import binding
from services.common.clock import ManualClock
from services.common.customer_scope import CUSTOMER_SCOPE_KEY
from services.common.grpc_errors import details_of
from tests.integration.charging.test_accounts_and_events import envelope
from tests.integration.charging.test_grpc_api import cc, eur, serving, voice

ALICE = ((CUSTOMER_SCOPE_KEY, "cus_alice"),)


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    async with serving(binding(app.handlers)) as running:
        yield running


async def created(app: ChargingApp, clock: ManualClock, account: str, customer: str) -> None:
    facts: dict[str, object] = {
        "account_id": account,
        "customer_id": customer,
        "currency_code": "EUR",
        "payment_mode": "PREPAID",
        "state": "ACTIVE",
        "create_time": clock.now().isoformat(),
    }
    await app.states.handle(envelope("AccountCreated", facts, clock, f"created-{account}"))


async def refused(call: Any) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), details_of(raised.value).reason, raised.value.details() or ""


def account_calls(stub: Any, account: str, tag: str) -> list[Any]:
    """Every account RPC, for ``account``, as Alice's call (coroutines, not yet awaited)."""
    later = Timestamp(seconds=4_102_444_800)  # 2100: in the future whatever the clock
    return [
        stub.GetBalance(pb.GetBalanceRequest(account_id=account), metadata=ALICE),
        stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id=account), metadata=ALICE),
        stub.GetAccountPolicy(pb.GetAccountPolicyRequest(account_id=account), metadata=ALICE),
        stub.SetAccountPolicy(
            pb.SetAccountPolicyRequest(
                policy=pb.AccountPolicy(
                    account_id=account,
                    billing_mode=pb.BILLING_MODE_POSTPAID,
                    currency_code="EUR",
                    credit_limit=eur(1000),
                ),
                request_id=f"policy-{tag}",
            ),
            metadata=ALICE,
        ),
        stub.TopUp(
            pb.TopUpRequest(
                account_id=account, amount=pb.Quantity(money=eur(5)), request_id=f"top-{tag}"
            ),
            metadata=ALICE,
        ),
        stub.Adjust(
            pb.AdjustRequest(
                account_id=account,
                bucket_id="main-EUR",
                delta=pb.Quantity(money=eur(-1)),
                reason="probe",
                request_id=f"adj-{tag}",
            ),
            metadata=ALICE,
        ),
        stub.CreateBucket(
            pb.CreateBucketRequest(
                bucket=pb.Bucket(account_id=account, unit_kind=pb.UNIT_KIND_TIME, label="x"),
                initial_amount=pb.Quantity(time_seconds=600),
                request_id=f"bucket-{tag}",
            ),
            metadata=ALICE,
        ),
        stub.UpdateBucket(
            pb.UpdateBucketRequest(
                bucket=pb.Bucket(account_id=account, bucket_id="main-EUR", valid_until=later),
                update_mask=FieldMask(paths=["valid_until"]),
                request_id=f"upd-{tag}",
            ),
            metadata=ALICE,
        ),
        stub.CloseBucket(
            pb.CloseBucketRequest(
                account_id=account, bucket_id="main-EUR", reason="probe", request_id=f"cl-{tag}"
            ),
            metadata=ALICE,
        ),
        stub.RedeemVoucher(
            pb.RedeemVoucherRequest(
                account_id=account, code="ABCDEFGHJKLMNPQR", request_id=f"v-{tag}"
            ),
            metadata=ALICE,
        ),
        stub.ListCreditControlSessions(
            pb.ListCreditControlSessionsRequest(account_id=account), metadata=ALICE
        ),
        stub.GetCreditControlSession(
            pb.GetCreditControlSessionRequest(account_id=account, session_id="s1"), metadata=ALICE
        ),
        stub.ReleaseCreditControlSession(
            pb.ReleaseCreditControlSessionRequest(
                account_id=account, session_id="s1", reason="probe", request_id=f"rel-{tag}"
            ),
            metadata=ALICE,
        ),
    ]


async def test_a_customer_scoped_call_reaches_only_that_customers_accounts(
    app: ChargingApp, clock: ManualClock, stub: Any
) -> None:
    await created(app, clock, "acc-alice", "cus_alice")
    await created(app, clock, "acc-bob", "cus_bob")
    await stub.TopUp(
        pb.TopUpRequest(account_id="acc-bob", amount=pb.Quantity(money=eur(20)), request_id="b1")
    )
    # A session of Bob's, so its RPCs have something to find.
    await stub.CreditControl(cc("s1", pb.REQUEST_TYPE_INITIAL, 0, "acc-bob", voice(60)))
    # Set by hand (no AccountCreated): nobody's, so no customer's call reaches it.
    await stub.SetAccountPolicy(
        pb.SetAccountPolicyRequest(
            policy=pb.AccountPolicy(
                account_id="acc-manual", billing_mode=pb.BILLING_MODE_PREPAID, currency_code="EUR"
            )
        )
    )
    before = await stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id="acc-bob"))

    # Her own account answers.
    own = await stub.GetBalance(pb.GetBalanceRequest(account_id="acc-alice"), metadata=ALICE)
    assert own.account_id == "acc-alice"
    await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(account_id="acc-alice"), metadata=ALICE
    )

    others = account_calls(stub, "acc-bob", "bob")
    unknown = account_calls(stub, "acc-nobody", "nobody")
    manual = account_calls(stub, "acc-manual", "manual")
    for bobs, nobodys, manuals in zip(others, unknown, manual, strict=True):
        answer = await refused(bobs)
        assert answer[:2] == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"), answer
        assert answer == await refused(nobodys)  # nothing tells Bob's account exists
        assert answer == await refused(manuals)

    # On her own account: reads yes; policy, buckets, money and sessions are the
    # operators' (PERMISSION_DENIED, after the owner check above answered NOT_FOUND).
    operators = {
        "SetAccountPolicy",
        "TopUp",
        "Adjust",
        "CreateBucket",
        "UpdateBucket",
        "CloseBucket",
        "ReleaseCreditControlSession",
    }
    names = [
        "GetBalance",
        "ListLedgerEntries",
        "GetAccountPolicy",
        "SetAccountPolicy",
        "TopUp",
        "Adjust",
        "CreateBucket",
        "UpdateBucket",
        "CloseBucket",
        "RedeemVoucher",
        "ListCreditControlSessions",
        "GetCreditControlSession",
        "ReleaseCreditControlSession",
    ]
    for name, call in zip(names, account_calls(stub, "acc-alice", "alice"), strict=True):
        if name in operators:
            code, reason, _ = await refused(call)
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING"), name
        elif name in ("RedeemVoucher", "GetCreditControlSession"):
            code, _, _ = await refused(call)  # no such voucher or session: hers to ask
            assert code is grpc.StatusCode.NOT_FOUND, name
        else:
            await call
    own = await stub.GetBalance(pb.GetBalanceRequest(account_id="acc-alice"))
    assert not [b for b in own.buckets if b.available.money.units]  # no top-up went in

    # Never a customer's: credit control, the catalog, voucher batches.
    never = [
        stub.CreditControl(
            cc("s2", pb.REQUEST_TYPE_INITIAL, 0, "acc-alice", voice(60)), metadata=ALICE
        ),
        stub.DefineService(
            pb.DefineServiceRequest(service=pb.ServiceDefinition(rating_group=99, service="x")),
            metadata=ALICE,
        ),
        stub.CreateVoucherBatch(
            pb.CreateVoucherBatchRequest(count=1, value=pb.Quantity(money=eur(1))),
            metadata=ALICE,
        ),
    ]
    for call in never:
        code, reason, _ = await refused(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    stream = stub.StreamCreditControl(metadata=ALICE)
    await stream.write(
        pb.StreamCreditControlRequest(
            request=cc("s3", pb.REQUEST_TYPE_INITIAL, 0, "acc-alice", voice(60))
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED

    # Nothing of Bob's moved; unscoped, it is all there.
    after = await stub.ListLedgerEntries(pb.ListLedgerEntriesRequest(account_id="acc-bob"))
    assert after == before
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id="acc-bob"))
    assert balance.billing_mode == pb.BILLING_MODE_PREPAID
    session = await stub.GetCreditControlSession(
        pb.GetCreditControlSessionRequest(account_id="acc-bob", session_id="s1")
    )
    assert session.session.session_id == "s1"
