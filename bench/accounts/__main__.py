"""``python -m bench.accounts``: the accounts service's read and write paths against the
kit's echo RPC, in one run.

Starts the accounts service as ``reckon up`` does (a child process on SQLite, an embedded
Redis, telemetry off) and the echo server of ``bench.grpc_baseline`` beside it, then
measures, closed loop with ``--concurrency`` calls in flight for ``--seconds`` each:

1. ``Echo``: the floor, the kit's gRPC server doing nothing (auth interceptor included);
2. ``GetAccount`` of one of ``--accounts`` accounts created first (a SQL read);
3. ``CreateAccount`` with a fresh request id each (a SQL write, its ``AccountOpened``
   event in the outbox, the relay publishing it to the Redis stream).

"Per server core" divides a rate by the CPU the serving process used in that phase: the
steadiest figure on a shared machine. The ratio of each path to the echo floor is printed
beside it; the client's CPU is shown too (near 100 % it is the limit, not the server).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common.cpu import CpuMeter, MachineMeter
from bench.common.echo_server import echo_server
from bench.common.loadgen import RunResult, closed_loop
from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.money import Money
from services.common.proto_convert import money_to_proto
from suite.supervisor import SuiteConfig, Supervisor

MS = 1_000_000
Call = Callable[[], Awaitable[Any]]
CREDIT_LIMIT = money_to_proto(Money.of("500", "EUR"))


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="in flight (default 16)")
    parser.add_argument("--accounts", type=int, default=200, help="read set (default 200)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    return parser.parse_args(argv)


def _new_account(customer_id: str) -> accounts_pb2.CreateAccountRequest:
    return accounts_pb2.CreateAccountRequest(
        account=accounts_pb2.Account(
            customer_id=customer_id,
            currency_code="EUR",
            time_zone="Europe/Amsterdam",
            bill_cycle_day=1,
            payment_mode=accounts_pb2.PAYMENT_MODE_POSTPAID,
            credit_limit=CREDIT_LIMIT,
        ),
        request_id=str(uuid.uuid4()),
    )


async def _measure(name: str, call: Call, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    await closed_loop(call, concurrency=args.concurrency, duration_s=1.0)  # warm-up
    server, client, others = CpuMeter(pid), CpuMeter(None), MachineMeter((pid,))
    for meter in (server, client, others):
        meter.start()
    run: RunResult = await closed_loop(call, concurrency=args.concurrency, duration_s=args.seconds)
    for meter in (server, client, others):
        meter.stop()
    latency = run.latency
    return {
        "path": name,
        "calls": run.ok,
        "rate": run.rate,
        "errors": run.errors,
        "first_error": run.first_error,
        "server_cpu_percent": server.percent,
        "client_cpu_percent": client.percent,
        "others_cpu_percent": others.percent,
        "per_server_core": run.rate / (server.percent / 100) if server.percent else None,
        "p50_ms": latency.p50_ns / MS if latency else None,
        "p95_ms": latency.p95_ns / MS if latency else None,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="reckon-bench-accounts-"))
    quiet = {**os.environ, "OTEL_SDK_DISABLED": "true", "RECKON_LOG_LEVEL": "WARNING"}
    supervisor = Supervisor(
        SuiteConfig(data_dir=data_dir, services=["accounts"], free_ports=True, environ=quiet)
    )
    supervisor.start()
    try:
        state = supervisor.state
        assert state is not None
        accounts_pid = next(p.pid for p in supervisor.processes if p.spec.name == "accounts")
        channel = open_channel(state.address_of("accounts") or "", state.token(), traced=False)
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        customer = await stub.CreateCustomer(
            accounts_pb2.CreateCustomerRequest(
                customer=accounts_pb2.Customer(display_name="Bench", email="bench@example.com"),
                request_id=str(uuid.uuid4()),
            )
        )
        customer_id = customer.customer.customer_id
        ids = [
            (await stub.CreateAccount(_new_account(customer_id))).account.account_id
            for _ in range(args.accounts)
        ]
        reads = itertools.cycle([accounts_pb2.GetAccountRequest(account_id=i) for i in ids])

        async def get_account() -> None:
            await stub.GetAccount(next(reads))

        async def create_account() -> None:
            await stub.CreateAccount(_new_account(customer_id))

        rows = []
        async with echo_server("off") as echo:
            echo_channel = open_channel(echo.address, echo.token, traced=False)
            echo_stub = echo_pb2_grpc.EchoServiceStub(echo_channel)
            request = echo_pb2.EchoRequest(payload=b"x" * 64)

            async def call_echo() -> None:
                await echo_stub.Echo(request)

            rows.append(await _measure("Echo (floor)", call_echo, echo.pid, args))
            await echo_channel.close()
        rows.append(await _measure("GetAccount", get_account, accounts_pid, args))
        rows.append(await _measure("CreateAccount", create_account, accounts_pid, args))
        await channel.close()
    finally:
        supervisor.stop()
    floor = rows[0]["per_server_core"]
    for row in rows:
        per_core = row["per_server_core"]
        row["ratio_to_floor"] = per_core / floor if per_core and floor else None
    return {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _format(result: dict[str, Any]) -> str:
    lines = [
        "| path | calls/s | server CPU | client CPU | others CPU | per server core "
        "| / echo per core | p50 | p95 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['path']} | {row['rate']:.0f} | {_fmt(row['server_cpu_percent'], '.0f')}% "
            f"| {_fmt(row['client_cpu_percent'], '.0f')}% "
            f"| {_fmt(row['others_cpu_percent'], '.0f')}% "
            f"| {_fmt(row['per_server_core'], '.0f')} | {_fmt(row['ratio_to_floor'], '.2f')} "
            f"| {_fmt(row['p50_ms'], '.2f')} ms | {_fmt(row['p95_ms'], '.2f')} ms "
            f"| {row['errors']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    result = asyncio.run(_run(args))
    print(_format(result))
    for row in result["rows"]:
        if row["first_error"]:
            print(f"{row['path']}: first error {row['first_error']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
