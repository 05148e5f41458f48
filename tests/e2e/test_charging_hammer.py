"""Charging hammered from outside a running suite, with Redis flushed and killed mid-run.

The suite is started as ``reckon up`` starts it (embedded persistent Redis, every
service a child process) with short grant validity, grace and sweep interval so the
Tcc timer fires within seconds. Accounts, buckets and top-ups are made through the
public gRPC API only; then many concurrent client sessions (unary and the stream)
send every request 1 to 5 times with the same request number (some copies at the
same time), some clients vanish after INITIAL, some send late and out-of-order
updates, and one reports used units after its reservation was swept. Mid-run the
suite's Redis is flushed, later killed with SIGKILL (by the PID the supervisor
started) and started again on the same port and data directory.

What is asserted is what a user sees: per bucket the balance charging reports
equals credits minus debits of its ledger, no prepaid balance below zero, no
postpaid account past its credit limit, every reported use charged exactly once,
reservations of vanished clients back within validity + grace, and the service
answering normally once Redis is back.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import redis

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.common.grpc_client import open_channel
from suite.redis_server import EmbeddedRedis
from suite.supervisor import Supervisor
from tests.e2e.hammer import (
    CONTENT,
    EUR,
    GRACE_SECONDS,
    HAMMER_ENV,
    MINUTES,
    OK,
    RETURN_SLACK_SECONDS,
    RPC_TIMEOUT,
    VALIDITY_SECONDS,
    Account,
    Observed,
    StreamPool,
    ccr,
    check_books,
    define_services,
    eur,
    mixed_accounts,
    mixed_load,
    open_account,
    open_mixed_accounts,
    outcomes,
    reserved_total,
    rid,
    send_copies,
    session,
    wait_until_nothing_reserved,
)
from tests.e2e.test_suite import start_suite

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    running = start_suite(tmp_path_factory.mktemp("hammer"), HAMMER_ENV)
    yield running
    running.stop()


@pytest.fixture
async def charging(supervisor: Supervisor) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    state = supervisor.state
    assert state is not None
    async with open_channel(state.address_of("charging") or "", state.token(), traced=False) as ch:
        yield charging_pb2_grpc.ChargingServiceStub(ch)


# --- the tests ------------------------------------------------------------------------


async def test_vanished_clients_late_and_out_of_order_updates(
    charging: charging_pb2_grpc.ChargingServiceStub,
) -> None:
    await define_services(charging)
    rng = random.Random(4)
    seen = Observed()
    accounts = [Account(f"vanish-{i}-{rid()}", pb.BILLING_MODE_PREPAID) for i in range(6)]
    for account in accounts:
        await open_account(charging, account.account_id, account.mode, balance="3", minutes=300)
    stream = StreamPool(charging)

    async def unary(request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        response: pb.CreditControlResponse = await charging.CreditControl(
            request, timeout=RPC_TIMEOUT
        )
        return response

    # Clients that vanish after INITIAL, on both transports and both units.
    started = time.monotonic()
    await asyncio.gather(
        *(
            session(
                unary if i % 2 else stream.send,
                accounts[i % len(accounts)].account_id,
                CONTENT if i % 3 else MINUTES,
                seen,
                rng,
                vanish=True,
            )
            for i in range(24)
        )
    )
    granted_by = time.monotonic()
    assert await reserved_total(charging, [a.account_id for a in accounts]) > 0
    # Every reservation is returned within validity + grace after its grant.
    waited = await wait_until_nothing_reserved(
        charging,
        [a.account_id for a in accounts],
        VALIDITY_SECONDS + GRACE_SECONDS + RETURN_SLACK_SECONDS + (granted_by - started),
    )
    print(
        f"vanished {seen.vanished} sessions; "
        f"all reservations back {waited:.2f}s after the last grant"
    )

    # A used-units report after the sweep returned the reservation is still debited.
    late = accounts[0].account_id
    sid = f"late-{rid()}"
    await send_copies(
        unary, ccr(sid, pb.REQUEST_TYPE_INITIAL, 0, late, CONTENT, requested=eur("0.50")), seen, rng
    )
    await wait_until_nothing_reserved(
        charging, [late], VALIDITY_SECONDS + GRACE_SECONDS + RETURN_SLACK_SECONDS
    )
    after_sweep = await send_copies(
        unary, ccr(sid, pb.REQUEST_TYPE_UPDATE, 1, late, CONTENT, used=eur("0.30")), seen, rng
    )
    print(f"late report answered {pb.ResultCode.Name(after_sweep.result_code)}")

    # Out-of-order updates and normal sessions, with retries, on both transports.
    await asyncio.gather(
        *(
            session(
                unary if i % 2 else stream.send,
                accounts[i % len(accounts)].account_id,
                CONTENT if i % 3 else MINUTES,
                seen,
                rng,
                out_of_order=True,
            )
            for i in range(12)
        )
    )
    await stream.close()
    await check_books(charging, accounts, seen)


async def charging_learns(
    charging: charging_pb2_grpc.ChargingServiceStub,
    account_id: str,
    state: pb.AccountState.ValueType,
) -> None:
    """Wait until the accounts service's events have told charging the account's state."""
    deadline = time.monotonic() + 10
    while True:
        try:
            policy = await charging.GetAccountPolicy(
                pb.GetAccountPolicyRequest(account_id=account_id), timeout=RPC_TIMEOUT
            )
            if policy.policy.state == state:
                return
        except grpc.aio.AioRpcError as failure:
            if failure.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, f"charging never learnt {account_id} is {state}"
        await asyncio.sleep(0.2)


async def events_still_reach_charging(
    supervisor: Supervisor, charging: charging_pb2_grpc.ChargingServiceStub
) -> None:
    """An account opened and suspended in accounts is known and refused by charging."""
    assert supervisor.state is not None
    state = supervisor.state
    async with open_channel(state.address_of("accounts") or "", state.token(), traced=False) as ch:
        accounts = accounts_pb2_grpc.AccountsServiceStub(ch)
        customer = (
            await accounts.CreateCustomer(
                accounts_pb2.CreateCustomerRequest(
                    customer=accounts_pb2.Customer(
                        display_name="Hammer After", email="after@hammer.example"
                    ),
                    request_id=rid(),
                ),
                timeout=RPC_TIMEOUT,
            )
        ).customer
        account = (
            await accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(
                    account=accounts_pb2.Account(
                        customer_id=customer.customer_id,
                        display_name="after the chaos",
                        currency_code=EUR,
                        time_zone="Europe/Amsterdam",
                        bill_cycle_day=1,
                        tax_region="NL",
                        payment_terms_days=14,
                        payment_mode=accounts_pb2.PAYMENT_MODE_PREPAID,
                    ),
                    request_id=rid(),
                ),
                timeout=RPC_TIMEOUT,
            )
        ).account
        await charging_learns(charging, account.account_id, pb.ACCOUNT_STATE_ACTIVE)
        await charging.TopUp(
            pb.TopUpRequest(account_id=account.account_id, amount=eur("1"), request_id=rid()),
            timeout=RPC_TIMEOUT,
        )
        await accounts.SuspendAccount(
            accounts_pb2.SuspendAccountRequest(
                account_id=account.account_id, reason="hammer", request_id=rid()
            ),
            timeout=RPC_TIMEOUT,
        )
    await charging_learns(charging, account.account_id, pb.ACCOUNT_STATE_SUSPENDED)
    refused = await charging.CreditControl(
        ccr(
            f"susp-{rid()}",
            pb.REQUEST_TYPE_INITIAL,
            0,
            account.account_id,
            CONTENT,
            requested=eur("0.10"),
        ),
        timeout=RPC_TIMEOUT,
    )
    assert refused.result_code == pb.RESULT_CODE_END_USER_SERVICE_DENIED


def kill_and_restart_redis(supervisor: Supervisor, *, keep_data: bool) -> int:
    """SIGKILL the Redis the suite started (by its PID) and start one on the same port."""
    old = supervisor.redis
    assert old is not None
    assert old.process is not None
    os.kill(old.process.pid, signal.SIGKILL)
    old.process.wait(timeout=10)
    directory = old.directory if keep_data else old.directory.parent / "redis-empty"
    supervisor.redis = EmbeddedRedis(directory, port=old.port, persist=True).start()
    assert supervisor.redis.process is not None
    return supervisor.redis.process.pid


async def test_hammer_with_redis_flushed_and_killed(
    supervisor: Supervisor, charging: charging_pb2_grpc.ChargingServiceStub
) -> None:
    assert supervisor.state is not None
    redis_url = supervisor.state.redis_url
    # The Redis killed below is the one the suite started and recorded.
    assert supervisor.redis is not None
    assert supervisor.redis.process is not None
    assert supervisor.state.redis_pid == supervisor.redis.process.pid
    rng = random.Random(9)
    seen = Observed()
    accounts = mixed_accounts()
    await open_mixed_accounts(charging, accounts)
    stop = asyncio.Event()
    load = asyncio.create_task(mixed_load(charging, accounts, seen, rng, stop))
    chaos: list[str] = []
    try:
        await asyncio.sleep(3)
        with redis.Redis.from_url(redis_url) as raw:
            raw.flushall()
        chaos.append(f"FLUSHALL after {seen.requests} requests")
        await asyncio.sleep(3)
        pid = await asyncio.to_thread(kill_and_restart_redis, supervisor, keep_data=True)
        chaos.append(f"SIGKILL, same data dir (pid {pid}) after {seen.requests} requests")
        await asyncio.sleep(3)
        pid = await asyncio.to_thread(kill_and_restart_redis, supervisor, keep_data=False)
        chaos.append(f"SIGKILL, empty data dir (pid {pid}) after {seen.requests} requests")
        await asyncio.sleep(3)
    finally:
        stop.set()
        streams = await load

    # Reservations of clients that vanished (also before the chaos) come back.
    await wait_until_nothing_reserved(
        charging,
        [a.account_id for a in accounts],
        VALIDITY_SECONDS + GRACE_SECONDS + RETURN_SLACK_SECONDS + 2,
    )
    figures = await check_books(charging, accounts, seen)

    # The service answers normally once Redis is back: a fresh session is granted.
    fresh = accounts[0].account_id
    await charging.TopUp(
        pb.TopUpRequest(account_id=fresh, amount=eur("1"), request_id=rid()), timeout=RPC_TIMEOUT
    )
    answer = await charging.CreditControl(
        ccr(f"after-{rid()}", pb.REQUEST_TYPE_INITIAL, 0, fresh, CONTENT, requested=eur("0.10")),
        timeout=RPC_TIMEOUT,
    )
    assert answer.result_code == OK
    assert "INTERNAL" not in seen.errors
    await events_still_reach_charging(supervisor, charging)
    print(
        f"sessions {seen.sessions} (vanished {seen.vanished}), requests {seen.requests}, "
        f"copies sent {seen.copies} ({seen.concurrent_copies} concurrent), "
        f"errors while Redis was away {dict(seen.errors)}, streams {[p.streams for p in streams]}; "
        f"{'; '.join(chaos)}; {figures}; answers {outcomes(seen)}"
    )
