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
import secrets
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import grpc
import pytest
import redis
from google.type import money_pb2

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.common.grpc_client import open_channel
from suite.redis_server import EmbeddedRedis
from suite.supervisor import Supervisor
from tests.e2e.test_suite import start_suite

pytestmark = pytest.mark.timeout(150)

VALIDITY_SECONDS = 3
GRACE_SECONDS = 1
SWEEP_INTERVAL_SECONDS = 0.2
# The sweeper runs every interval; a reservation due at validity + grace is back at
# most one interval later, plus scheduling noise on two shared cores.
RETURN_SLACK_SECONDS = 1.5
HAMMER_ENV = {
    "CHARGING_VALIDITY_SECONDS": str(VALIDITY_SECONDS),
    "CHARGING_GRACE_SECONDS": str(GRACE_SECONDS),
    "CHARGING_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
    "CHARGING_REBUILD_FENCE_MS": "300",
    "CHARGING_JOURNAL_DRAIN_MS": "1000",
    "CHARGING_LEDGER_STALE_SECONDS": "1.0",
}

CONTENT = 10  # money-measured rating group: requests are amounts of EUR
MINUTES = 20  # time rating group drawn from time buckets only
EUR = "EUR"
OK = pb.RESULT_CODE_SUCCESS
RPC_TIMEOUT = 5.0
# A request that keeps failing (Redis down) is retried for this long, same number.
RETRY_BUDGET_SECONDS = 20.0


def eur(amount: str | Decimal) -> pb.Quantity:
    value = Decimal(amount)
    units = int(value)
    nanos = int((value - units) * 1_000_000_000)
    return pb.Quantity(money=money_pb2.Money(currency_code=EUR, units=units, nanos=nanos))


def seconds(n: int) -> pb.Quantity:
    return pb.Quantity(time_seconds=n)


def amount_of(quantity: pb.Quantity) -> Decimal:
    """The exact amount of a quantity in its own unit (EUR or seconds)."""
    which = quantity.WhichOneof("value")
    if which == "money":
        return Decimal(quantity.money.units) + Decimal(quantity.money.nanos) / 10**9
    if which is None:
        return Decimal(0)
    return Decimal(getattr(quantity, which))


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


def rid() -> str:
    return secrets.token_hex(8)


async def define_services(stub: charging_pb2_grpc.ChargingServiceStub) -> None:
    for definition in (
        pb.ServiceDefinition(
            rating_group=CONTENT,
            service="content",
            unit_kind=pb.UNIT_KIND_MONEY,
            charging=pb.SERVICE_CHARGING_RATED,
        ),
        pb.ServiceDefinition(
            rating_group=MINUTES,
            service="minutes",
            unit_kind=pb.UNIT_KIND_TIME,
            charging=pb.SERVICE_CHARGING_UNITS_ONLY,
            default_quota=30,
        ),
    ):
        await stub.DefineService(
            pb.DefineServiceRequest(service=definition, request_id=rid()), timeout=RPC_TIMEOUT
        )


async def open_account(
    stub: charging_pb2_grpc.ChargingServiceStub,
    account_id: str,
    mode: pb.BillingMode.ValueType,
    *,
    balance: str = "0",
    credit_limit: str = "0",
    minutes: int = 0,
) -> None:
    policy = pb.AccountPolicy(account_id=account_id, billing_mode=mode, currency_code=EUR)
    if mode != pb.BILLING_MODE_PREPAID:
        policy.credit_limit.CopyFrom(eur(credit_limit).money)
    await stub.SetAccountPolicy(
        pb.SetAccountPolicyRequest(policy=policy, request_id=rid()), timeout=RPC_TIMEOUT
    )
    if Decimal(balance) > 0:
        await stub.TopUp(
            pb.TopUpRequest(account_id=account_id, amount=eur(balance), request_id=rid()),
            timeout=RPC_TIMEOUT,
        )
    if minutes:
        await stub.CreateBucket(
            pb.CreateBucketRequest(
                bucket=pb.Bucket(account_id=account_id, unit_kind=pb.UNIT_KIND_TIME, label="min"),
                initial_amount=seconds(minutes),
                request_id=rid(),
            ),
            timeout=RPC_TIMEOUT,
        )


def ccr(
    session: str,
    kind: pb.RequestType.ValueType,
    number: int,
    account: str,
    group: int,
    *,
    requested: pb.Quantity | None = None,
    used: pb.Quantity | None = None,
) -> pb.CreditControlRequest:
    services = pb.MultipleServicesCreditControl(rating_group=group)
    if requested is not None:
        services.requested_units.CopyFrom(requested)
    if used is not None:
        services.used_units.CopyFrom(used)
    return pb.CreditControlRequest(
        session_id=session,
        request_type=kind,
        request_number=number,
        account_id=account,
        multiple_services=[services],
    )


# --- what the hammer saw --------------------------------------------------------------


@dataclass
class Observed:
    # (session, request number) -> used units reported in it, for every answered request.
    reported: dict[tuple[str, int], Decimal] = field(default_factory=dict)
    # (session, request number) -> the answer every copy of the request got.
    answers: dict[tuple[str, int], list[pb.CreditControlResponse]] = field(
        default_factory=lambda: defaultdict(list)
    )
    stale: set[tuple[str, int]] = field(default_factory=set)
    requests: int = 0
    copies: int = 0
    concurrent_copies: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sessions: int = 0
    vanished: int = 0


Send = Callable[[pb.CreditControlRequest], Awaitable[pb.CreditControlResponse]]


async def with_retries(
    send: Send, request: pb.CreditControlRequest, seen: Observed
) -> pb.CreditControlResponse:
    """One copy of a request, retried with the same number while the service cannot answer."""
    deadline = time.monotonic() + RETRY_BUDGET_SECONDS
    while True:
        try:
            return await send(request)
        except grpc.aio.AioRpcError as failure:
            seen.errors[failure.code().name] += 1
            # Only UNAVAILABLE says "retry": INTERNAL while Redis is away is a bug.
            if failure.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        except StreamRequestError as failure:
            seen.errors[failure.code] += 1
            if failure.retryable is False or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def send_copies(
    send: Send, request: pb.CreditControlRequest, seen: Observed, rng: random.Random
) -> pb.CreditControlResponse:
    """Send the request 1 to 5 times with the same number, some copies at the same time."""
    copies = rng.choice((1, 1, 2, 3, 5))
    concurrent = copies > 1 and rng.random() < 0.5
    if concurrent:
        answers = list(
            await asyncio.gather(*(with_retries(send, request, seen) for _ in range(copies)))
        )
        seen.concurrent_copies += copies
    else:
        answers = [await with_retries(send, request, seen) for _ in range(copies)]
    seen.requests += 1
    seen.copies += copies
    key = (request.session_id, request.request_number)
    seen.answers[key].extend(answers)
    used = sum((amount_of(rg.used_units) for rg in request.multiple_services), start=Decimal(0))
    seen.reported[key] = used
    return answers[0]


class StreamRequestError(Exception):
    def __init__(self, code: str, *, retryable: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.retryable = retryable


class StreamClient:
    """Many sessions over one StreamCreditControl call, correlated by (session, number)."""

    def __init__(self, stub: charging_pb2_grpc.ChargingServiceStub) -> None:
        self._outgoing: asyncio.Queue[pb.StreamCreditControlRequest | None] = asyncio.Queue()
        self._waiting: dict[
            tuple[str, int], list[asyncio.Future[pb.StreamCreditControlResponse]]
        ] = defaultdict(list)
        self._call = stub.StreamCreditControl(self._requests())
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.StreamCreditControlRequest]:
        while (item := await self._outgoing.get()) is not None:
            yield item

    async def _read(self) -> None:
        try:
            async for reply in self._call:
                waiting = self._waiting[(reply.session_id, reply.request_number)]
                if waiting:
                    waiting.pop(0).set_result(reply)
        except grpc.aio.AioRpcError as failure:
            self._fail(f"stream {failure.code().name}")
            return
        self._fail("stream ended")

    def _fail(self, why: str) -> None:
        for waiting in self._waiting.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(StreamRequestError(why))
            waiting.clear()

    @property
    def broken(self) -> bool:
        return self._reader.done()

    async def send(self, request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        if self.broken:
            raise StreamRequestError("stream ended")
        future: asyncio.Future[pb.StreamCreditControlResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[(request.session_id, request.request_number)].append(future)
        await self._outgoing.put(pb.StreamCreditControlRequest(request=request))
        reply = await asyncio.wait_for(future, RPC_TIMEOUT)
        if reply.HasField("error"):
            code = grpc.StatusCode.UNAVAILABLE.value[0]
            raise StreamRequestError(
                f"answer error {reply.error.code}: {reply.error.message}",
                retryable=reply.error.code == code,
            )
        return reply.response

    async def close(self) -> None:
        await self._outgoing.put(None)
        try:
            await asyncio.wait_for(self._reader, RPC_TIMEOUT)
        except TimeoutError:
            self._call.cancel()


class StreamPool:
    """A stream that is replaced when it breaks, as a gateway would reconnect."""

    def __init__(self, stub: charging_pb2_grpc.ChargingServiceStub) -> None:
        self._stub = stub
        self._client = StreamClient(stub)
        self.streams = 1

    async def send(self, request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        if self._client.broken:
            self._client = StreamClient(self._stub)
            self.streams += 1
        return await self._client.send(request)

    async def close(self) -> None:
        await self._client.close()


async def session(
    send: Send,
    account: str,
    group: int,
    seen: Observed,
    rng: random.Random,
    *,
    vanish: bool = False,
    out_of_order: bool = False,
) -> None:
    """One credit-control session: INITIAL, a few UPDATEs reporting use, TERMINATE."""
    sid = f"hammer-{secrets.token_hex(6)}"
    seen.sessions += 1

    def ask() -> pb.Quantity:
        return eur("0.20") if group == CONTENT else seconds(30)

    def use(granted: pb.Quantity) -> pb.Quantity:
        have = amount_of(granted)
        if group == CONTENT:
            return eur(min(have, Decimal(rng.randint(1, 20)) / 100))
        return seconds(int(min(have, Decimal(rng.randint(1, 30)))))

    number = 0
    answer = await send_copies(
        send, ccr(sid, pb.REQUEST_TYPE_INITIAL, number, account, group, requested=ask()), seen, rng
    )
    if vanish:
        seen.vanished += 1
        return
    granted = (
        answer.multiple_services[0].granted_units if answer.multiple_services else pb.Quantity()
    )
    for _ in range(rng.randint(1, 4)):
        if answer.result_code != OK or amount_of(granted) == 0:
            break
        number += 1
        if out_of_order and number == 2:
            # The network sends #3 before #2; #2 arrives late and must change nothing.
            ahead = ccr(
                sid, pb.REQUEST_TYPE_UPDATE, 3, account, group, requested=ask(), used=use(granted)
            )
            answer = await send_copies(send, ahead, seen, rng)
            late = await send_copies(
                send,
                ccr(
                    sid,
                    pb.REQUEST_TYPE_UPDATE,
                    2,
                    account,
                    group,
                    requested=ask(),
                    used=use(granted),
                ),
                seen,
                rng,
            )
            seen.stale.add((sid, 2))
            assert late.result_code == pb.RESULT_CODE_OUT_OF_ORDER, late
            number = 3
        else:
            answer = await send_copies(
                send,
                ccr(
                    sid,
                    pb.REQUEST_TYPE_UPDATE,
                    number,
                    account,
                    group,
                    requested=ask(),
                    used=use(granted),
                ),
                seen,
                rng,
            )
        granted = (
            answer.multiple_services[0].granted_units if answer.multiple_services else pb.Quantity()
        )
        await asyncio.sleep(rng.random() * 0.05)
    final = (
        use(granted) if answer.result_code == OK else (eur("0") if group == CONTENT else seconds(0))
    )
    await send_copies(
        send, ccr(sid, pb.REQUEST_TYPE_TERMINATE, number + 1, account, group, used=final), seen, rng
    )


# --- what the user sees afterwards ----------------------------------------------------


async def ledger_of(
    stub: charging_pb2_grpc.ChargingServiceStub, account: str
) -> list[pb.LedgerEntry]:
    entries: list[pb.LedgerEntry] = []
    token = ""
    while True:
        page = await stub.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(account_id=account, page_size=500, page_token=token),
            timeout=RPC_TIMEOUT,
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


async def balance_of(
    stub: charging_pb2_grpc.ChargingServiceStub, account: str
) -> pb.GetBalanceResponse:
    response: pb.GetBalanceResponse = await stub.GetBalance(
        pb.GetBalanceRequest(account_id=account), timeout=RPC_TIMEOUT
    )
    return response


async def reserved_total(
    stub: charging_pb2_grpc.ChargingServiceStub, accounts: list[str]
) -> Decimal:
    total = Decimal(0)
    for account in accounts:
        for line in (await balance_of(stub, account)).buckets:
            total += amount_of(line.reserved)
    return total


def signed(entry: pb.LedgerEntry) -> Decimal:
    amount = amount_of(entry.amount)
    return amount if entry.direction == pb.ENTRY_DIRECTION_CREDIT else -amount


@dataclass
class Account:
    account_id: str
    mode: pb.BillingMode.ValueType
    credit_limit: Decimal = Decimal(0)


async def check_books(
    stub: charging_pb2_grpc.ChargingServiceStub, accounts: list[Account], seen: Observed
) -> dict[str, int]:
    """Balances equal the ledger, limits hold, every reported use charged exactly once."""
    problems: list[str] = []
    charged: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    usage_entries = 0
    for account in accounts:
        balance = await balance_of(stub, account.account_id)
        ledger = await ledger_of(stub, account.account_id)
        by_bucket: dict[str, Decimal] = defaultdict(Decimal)
        for entry in ledger:
            by_bucket[entry.bucket_id] += signed(entry)
            if entry.kind == pb.ENTRY_KIND_USAGE:
                usage_entries += 1
                charged[(entry.session_id, entry.request_number)] += amount_of(entry.amount)
        for line in balance.buckets:
            bucket = line.bucket.bucket_id
            available, reserved = amount_of(line.available), amount_of(line.reserved)
            if available + reserved != by_bucket.get(bucket, Decimal(0)):
                problems.append(
                    f"{account.account_id}/{bucket}: available {available} + reserved {reserved}"
                    f" != ledger {by_bucket.get(bucket, Decimal(0))}"
                )
            if reserved != 0:
                problems.append(f"{account.account_id}/{bucket}: still reserved {reserved}")
            floor = -account.credit_limit if line.bucket.main else Decimal(0)
            if account.mode == pb.BILLING_MODE_PREPAID:
                floor = Decimal(0)
            if available < floor:
                problems.append(f"{account.account_id}/{bucket}: available {available} < {floor}")
        missing = set(by_bucket) - {line.bucket.bucket_id for line in balance.buckets}
        if missing:
            problems.append(f"{account.account_id}: ledger buckets {missing} not in the balance")
    for key, used in seen.reported.items():
        expected = Decimal(0) if key in seen.stale else used
        if charged.get(key, Decimal(0)) != expected:
            problems.append(f"{key}: reported {used}, charged {charged.get(key, Decimal(0))}")
    for key in set(charged) - set(seen.reported):
        problems.append(f"{key}: charged {charged[key]} but never reported")
    for key, answers in seen.answers.items():
        if any(answer != answers[0] for answer in answers):
            problems.append(f"{key}: copies got different answers {answers}")
    assert problems == [], "\n".join(problems[:40])
    return {"usage_entries": usage_entries, "charged_requests": len(charged)}


def outcomes(seen: Observed) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for answers in seen.answers.values():
        counts[pb.ResultCode.Name(answers[0].result_code)] += 1
    return dict(counts)


async def wait_until_nothing_reserved(
    stub: charging_pb2_grpc.ChargingServiceStub, accounts: list[str], limit: float
) -> float:
    started = time.monotonic()
    while (left := await reserved_total(stub, accounts)) != 0:
        assert time.monotonic() - started < limit, f"{left} still reserved after {limit}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


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
    accounts = [
        *(Account(f"pre-{i}-{rid()}", pb.BILLING_MODE_PREPAID) for i in range(8)),
        # Small limits: some postpaid and hybrid accounts reach theirs under the load.
        *(Account(f"post-{i}-{rid()}", pb.BILLING_MODE_POSTPAID, Decimal(8)) for i in range(4)),
        *(Account(f"hyb-{i}-{rid()}", pb.BILLING_MODE_HYBRID, Decimal(2)) for i in range(4)),
    ]
    # Half the prepaid accounts run dry under the load: a rebuild must not hand money a
    # session still holds to another one (the first one's usage would go below zero).
    top_up = {a.account_id: "1" if i < 4 else "20" for i, a in enumerate(accounts)}
    for account in accounts:
        await open_account(
            charging,
            account.account_id,
            account.mode,
            balance="0" if account.mode == pb.BILLING_MODE_POSTPAID else top_up[account.account_id],
            credit_limit=str(account.credit_limit),
            minutes=120 if account.mode != pb.BILLING_MODE_POSTPAID else 0,
        )

    async def unary(request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        response: pb.CreditControlResponse = await charging.CreditControl(
            request, timeout=RPC_TIMEOUT
        )
        return response

    streams = [StreamPool(charging) for _ in range(2)]
    stop = asyncio.Event()

    async def client(n: int) -> None:
        send = unary if n % 2 else streams[n % len(streams)].send
        while not stop.is_set():
            account = rng.choice(accounts)
            group = (
                MINUTES
                if account.mode != pb.BILLING_MODE_POSTPAID and rng.random() < 0.3
                else CONTENT
            )
            await session(send, account.account_id, group, seen, rng, vanish=rng.random() < 0.15)

    load = [asyncio.create_task(client(n)) for n in range(16)]
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
        await asyncio.gather(*load)
    for pool in streams:
        await pool.close()

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
