"""The charging hammer's scenario code, shared by the hammer and the scale-out test.

Sessions of credit-control requests sent 1 to 5 times with the same request number
(some copies at the same time), on unary calls and on the batched stream, retried
while the service answers UNAVAILABLE; what was reported and answered is kept in
``Observed`` so ``check_books`` can assert afterwards, through the public API only,
that balances equal the ledger, no prepaid balance is below zero, no postpaid account
is past its limit and every reported use was charged exactly once.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import grpc
from google.type import money_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc

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
# A time rating group priced by the rating service (only where a test wires one in):
# VOICE_PRICE per started minute of the whole session, to VOICE_DESTINATION.
VOICE = 30
VOICE_DESTINATION = "31201234567"
VOICE_PRICE = Decimal("0.12")
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
    if group == VOICE:
        services.destination = VOICE_DESTINATION
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
    # Sessions on VOICE: charged money for reported seconds, by rating's price.
    voice: set[str] = field(default_factory=set)
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
            self._fail(f"stream {failure.code().name}: {failure.details()}")
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
    if group == VOICE:
        seen.voice.add(sid)

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
        if key[0] in seen.voice:
            continue  # priced per session below
        expected = Decimal(0) if key in seen.stale else used
        if charged.get(key, Decimal(0)) != expected:
            problems.append(f"{key}: reported {used}, charged {charged.get(key, Decimal(0))}")
    problems.extend(voice_problems(seen, charged))
    for key in set(charged) - set(seen.reported):
        problems.append(f"{key}: charged {charged[key]} but never reported")
    for key, answers in seen.answers.items():
        if any(answer != answers[0] for answer in answers):
            problems.append(f"{key}: copies got different answers {answers}")
    assert problems == [], "\n".join(problems[:40])
    return {"usage_entries": usage_entries, "charged_requests": len(charged)}


def voice_problems(seen: Observed, charged: dict[tuple[str, int], Decimal]) -> list[str]:
    """A VOICE session is charged rating's price of all its reported seconds, once:
    VOICE_PRICE per started minute (each report debits the price of the session so far
    less what was debited before), however many replicas its requests went to."""
    used: dict[str, Decimal] = defaultdict(Decimal)
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for (sid, number), seconds_used in seen.reported.items():
        if sid in seen.voice and (sid, number) not in seen.stale:
            used[sid] += seconds_used
    for (sid, _), amount in charged.items():
        if sid in seen.voice:
            paid[sid] += amount
    problems = []
    for sid in seen.voice:
        minutes = (used[sid] + 59) // 60  # started minutes (whole seconds, >= 0)
        if paid[sid] != VOICE_PRICE * minutes:
            problems.append(f"{sid}: {used[sid]}s used, charged {paid[sid]}")
    return problems


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


# --- the mixed load ---------------------------------------------------------------------


def mixed_accounts() -> list[Account]:
    """Prepaid, postpaid and hybrid accounts; small limits so some reach theirs."""
    return [
        *(Account(f"pre-{i}-{rid()}", pb.BILLING_MODE_PREPAID) for i in range(8)),
        *(Account(f"post-{i}-{rid()}", pb.BILLING_MODE_POSTPAID, Decimal(8)) for i in range(4)),
        *(Account(f"hyb-{i}-{rid()}", pb.BILLING_MODE_HYBRID, Decimal(2)) for i in range(4)),
    ]


async def open_mixed_accounts(
    stub: charging_pb2_grpc.ChargingServiceStub, accounts: list[Account]
) -> None:
    # Half the prepaid accounts run dry under the load: a rebuild must not hand money a
    # session still holds to another one (the first one's usage would go below zero).
    top_up = {a.account_id: "1" if i < 4 else "20" for i, a in enumerate(accounts)}
    for account in accounts:
        await open_account(
            stub,
            account.account_id,
            account.mode,
            balance="0" if account.mode == pb.BILLING_MODE_POSTPAID else top_up[account.account_id],
            credit_limit=str(account.credit_limit),
            minutes=120 if account.mode != pb.BILLING_MODE_POSTPAID else 0,
        )


def unary_sender(stub: charging_pb2_grpc.ChargingServiceStub, timeout: float = RPC_TIMEOUT) -> Send:
    async def unary(request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        response: pb.CreditControlResponse = await stub.CreditControl(request, timeout=timeout)
        return response

    return unary


async def mixed_load(
    stub: charging_pb2_grpc.ChargingServiceStub,
    accounts: list[Account],
    seen: Observed,
    rng: random.Random,
    stop: asyncio.Event,
    *,
    clients: int = 16,
    voice_share: float = 0.0,
) -> list[StreamPool]:
    """Sessions on every account, half the clients unary, half on two streams, until
    ``stop``; returns the (closed) stream pools, whose ``streams`` count reconnects.
    ``voice_share`` of the postpaid accounts' sessions go to VOICE (the caller wired
    rating in)."""
    unary = unary_sender(stub)
    streams = [StreamPool(stub) for _ in range(2)]

    async def client(n: int) -> None:
        send = unary if n % 2 else streams[n % len(streams)].send
        while not stop.is_set():
            account = rng.choice(accounts)
            group = (
                MINUTES
                if account.mode != pb.BILLING_MODE_POSTPAID and rng.random() < 0.3
                else CONTENT
            )
            # VOICE on accounts without time buckets: its seconds are then all priced in
            # money, so what each session was charged is rating's price of its seconds.
            if account.mode == pb.BILLING_MODE_POSTPAID and rng.random() < voice_share:
                group = VOICE
            await session(send, account.account_id, group, seen, rng, vanish=rng.random() < 0.15)

    try:
        await asyncio.gather(*(client(n) for n in range(clients)))
    finally:
        for pool in streams:
            await pool.close()
    return streams
