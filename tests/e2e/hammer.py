"""The charging hammer's scenario code, shared by the hammer and the scale-out test.

Sessions of credit-control requests sent 1 to 5 times with the same request number
(some copies at the same time), on unary calls and on the batched stream, retried
while the service answers UNAVAILABLE; what was reported and answered is kept in
``Observed`` so ``check_books`` can assert afterwards, through the public API only,
that balances equal the ledger, no prepaid balance is below zero, no postpaid account
is past its limit and every reported use was charged exactly once.

The parts: ``hammer_setup`` (settings, requests, accounts), ``hammer_sessions``
(sessions, copies, retries, the stream client), ``hammer_books`` (the checks
afterwards); the mixed load of both tests is here, and every name is re-exported.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from tests.e2e.hammer_books import (
    Account,
    balance_of,
    check_books,
    ledger_of,
    outcomes,
    reserved_total,
    signed,
    voice_problems,
    wait_until_nothing_reserved,
)
from tests.e2e.hammer_sessions import (
    Observed,
    Send,
    StreamClient,
    StreamPool,
    StreamRequestError,
    send_copies,
    session,
    with_retries,
)
from tests.e2e.hammer_setup import (
    CONTENT,
    EUR,
    GRACE_SECONDS,
    HAMMER_ENV,
    MINUTES,
    OK,
    RETRY_BUDGET_SECONDS,
    RETURN_SLACK_SECONDS,
    RPC_TIMEOUT,
    SWEEP_INTERVAL_SECONDS,
    VALIDITY_SECONDS,
    VOICE,
    VOICE_DESTINATION,
    VOICE_PRICE,
    amount_of,
    ccr,
    define_services,
    eur,
    open_account,
    rid,
    seconds,
)


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


__all__ = [
    "CONTENT",
    "EUR",
    "GRACE_SECONDS",
    "HAMMER_ENV",
    "MINUTES",
    "OK",
    "RETRY_BUDGET_SECONDS",
    "RETURN_SLACK_SECONDS",
    "RPC_TIMEOUT",
    "SWEEP_INTERVAL_SECONDS",
    "VALIDITY_SECONDS",
    "VOICE",
    "VOICE_DESTINATION",
    "VOICE_PRICE",
    "Account",
    "Observed",
    "Send",
    "StreamClient",
    "StreamPool",
    "StreamRequestError",
    "amount_of",
    "balance_of",
    "ccr",
    "check_books",
    "define_services",
    "eur",
    "ledger_of",
    "mixed_accounts",
    "mixed_load",
    "open_account",
    "open_mixed_accounts",
    "outcomes",
    "reserved_total",
    "rid",
    "seconds",
    "send_copies",
    "session",
    "signed",
    "unary_sender",
    "voice_problems",
    "wait_until_nothing_reserved",
    "with_retries",
]
