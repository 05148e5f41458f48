"""What the charging hammer sends and saw: sessions of credit-control requests sent 1 to
5 times with the same request number (some copies at the same time), on unary calls
and on the batched stream, retried while the service answers UNAVAILABLE; what was
reported and answered is kept in ``Observed``.
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

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from tests.e2e.hammer_setup import (
    CONTENT,
    OK,
    RETRY_BUDGET_SECONDS,
    RPC_TIMEOUT,
    VOICE,
    amount_of,
    ccr,
    eur,
    seconds,
)


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
