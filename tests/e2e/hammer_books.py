"""What the user sees after the hammer, through the public API only: balances equal the
ledger, no prepaid balance is below zero, no postpaid account is past its limit, every
reported use was charged exactly once, and every reservation comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from tests.e2e.hammer_sessions import Observed
from tests.e2e.hammer_setup import RPC_TIMEOUT, VOICE_PRICE, amount_of


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
