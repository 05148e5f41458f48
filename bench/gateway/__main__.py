"""``python -m bench.gateway``: an account's balance over HTTP through the gateway
against the same ``GetBalance`` over gRPC directly, in one run.

Starts accounts, rating and charging as ``reckon up`` does (child processes, embedded
Redis, telemetry off), then the gateway as its own process (``python -m gateway``),
creates one prepaid account with a balance and an API key, and measures:

1. closed loop, ``--concurrency`` calls in flight, ``--seconds`` each: direct gRPC, then
   HTTP through the gateway -> calls/s and the CPU of charging and of the gateway;
2. open loop paced at ``--paced-rate`` calls/s: p50/p95 latency of each path; the
   gateway's added p50 is the difference.

Both phases of both paths are repeated ``--rounds`` times, alternating, and each ratio
printed is the median of the rounds' ratios (each round's is printed too): on a shared
machine a neighbour's burst then spoils one round, not the figure.

"Per core" divides a rate by the CPU the serving processes used (charging alone for the
direct path; gateway + charging through the gateway): the steadiest figure on a shared
machine. Each server is measured with its descendants, so a gateway whose server runs
the app in worker processes is counted whole. The client (httpx / grpc.aio in this
process) is measured too: near 100% it is the limit, not the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.common.cpu import CpuMeter, MachineMeter
from bench.common.loadgen import RunResult, closed_loop, open_loop
from gateway.store import CredentialStore
from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2, charging_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.money import Money
from services.common.proto_convert import money_to_proto
from suite.redis_server import free_port
from suite.supervisor import CODE_ROOT, SuiteConfig, Supervisor

MS = 1_000_000


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed loop (default 16)")
    parser.add_argument("--paced-rate", type=float, default=100.0, help="calls/s (default 100)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="direct and gateway phases alternated this many times; the ratios are the "
        "medians of the rounds (default 3: a neighbour's burst lands in one round, not all)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the gateway under cProfile and write its profile here (slows it down)",
    )
    return parser.parse_args(argv)


async def _prepare(supervisor: Supervisor) -> str:
    """A prepaid account with 100 EUR, once charging has heard of it."""
    state = supervisor.state
    assert state is not None
    channel = open_channel(state.address_of("accounts") or "", state.token(), traced=False)
    charging = open_channel(state.address_of("charging") or "", state.token(), traced=False)
    accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
    customer = await accounts.CreateCustomer(
        accounts_pb2.CreateCustomerRequest(
            customer=accounts_pb2.Customer(display_name="Bench", email="bench@example.com"),
            request_id=str(uuid.uuid4()),
        )
    )
    account = await accounts.CreateAccount(
        accounts_pb2.CreateAccountRequest(
            account=accounts_pb2.Account(
                customer_id=customer.customer.customer_id,
                currency_code="EUR",
                time_zone="UTC",
                bill_cycle_day=1,
                payment_mode=accounts_pb2.PAYMENT_MODE_PREPAID,
            ),
            request_id=str(uuid.uuid4()),
        )
    )
    account_id = str(account.account.account_id)
    stub = charging_pb2_grpc.ChargingServiceStub(charging)
    top_up = charging_pb2.TopUpRequest(
        account_id=account_id,
        amount=charging_pb2.Quantity(money=money_to_proto(Money.of("100", "EUR"))),
        request_id=f"bench-{account_id}",
    )
    for _ in range(200):
        try:
            await stub.TopUp(top_up)
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.1)
    await channel.close()
    await charging.close()
    return account_id


class RawHttp:
    """A minimal keep-alive HTTP/1.1 GET client on asyncio streams: one connection per
    caller in flight, so the load generator costs little and adds no pool of its own
    (httpx's async pool was the bottleneck at 16 in flight, not the gateway)."""

    def __init__(self, url: str, path: str, headers: dict[str, str]) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> None:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.idle.append((reader, writer))
        if status != b"200":
            raise RuntimeError(f"{status.decode()}: {body[:200]!r}")

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def _start_gateway(
    supervisor: Supervisor, data_dir: Path, profile: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    state = supervisor.state
    assert state is not None
    port = free_port()
    env = {
        **os.environ,
        "RECKON_SERVICE_TOKEN": state.token(),
        "REDIS_URL": state.redis_url,
        "RECKON_DATA_DIR": str(data_dir),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000000",
        "ACCOUNTS_ADDR": state.address_of("accounts") or "",
        "RATING_ADDR": state.address_of("rating") or "",
        "CHARGING_ADDR": state.address_of("charging") or "",
        "OTEL_SDK_DISABLED": "true",
        "RECKON_LOG_LEVEL": "WARNING",
    }
    command = ["-m", "gateway"]
    if profile is not None:
        command = ["-m", "bench.gateway.profiled", str(profile)]
    process = subprocess.Popen(
        [sys.executable, *command],
        env=env,
        cwd=CODE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "gateway.log").open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the gateway did not start; see {data_dir / 'gateway.log'}")


async def _measure(
    name: str, call: Any, pids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    await closed_loop(call, concurrency=args.concurrency, duration_s=1.0)  # warm-up
    # Each server with its descendants: a server that runs its app in worker
    # processes (uvicorn --workers, granian's default) is measured whole.
    servers = [CpuMeter(pid, tree=True) for pid in pids]
    client, others = CpuMeter(None), MachineMeter(tuple(pids), tree=True)
    meters: list[CpuMeter | MachineMeter] = [*servers, client, others]
    for meter in meters:
        meter.start()
    peak: RunResult = await closed_loop(call, concurrency=args.concurrency, duration_s=args.seconds)
    for meter in meters:
        meter.stop()
    paced = await open_loop(call, rate=args.paced_rate, duration_s=args.seconds)
    server_cpu = sum(m.percent or 0.0 for m in servers)
    latency, peak_latency = paced.latency, peak.latency
    return {
        "path": name,
        "rate": peak.rate,
        "errors": peak.errors + paced.errors,
        "first_error": peak.first_error or paced.first_error,
        "server_cpu_percent": [m.percent for m in servers],
        "client_cpu_percent": client.percent,
        "others_cpu_percent": others.percent,
        "per_server_core": peak.rate / (server_cpu / 100) if server_cpu else None,
        # The first server alone (the gateway on the HTTP path): its own cost per call.
        "per_first_server_core": peak.rate / (servers[0].percent / 100)
        if servers[0].percent
        else None,
        "peak_p50_ms": peak_latency.p50_ns / MS if peak_latency else None,
        "paced_p50_ms": latency.p50_ns / MS if latency else None,
        "paced_p95_ms": latency.p95_ns / MS if latency else None,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="reckon-bench-gateway-"))
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=data_dir,
            services=["accounts", "rating", "charging"],
            free_ports=True,
            environ={**os.environ, "OTEL_SDK_DISABLED": "true", "RECKON_LOG_LEVEL": "WARNING"},
        )
    )
    supervisor.start()
    gateway: subprocess.Popen[bytes] | None = None
    try:
        state = supervisor.state
        assert state is not None
        account_id = await _prepare(supervisor)
        store = CredentialStore.open(f"sqlite:///{data_dir / 'gateway.db'}", None)
        _, key = store.add_api_client("bench", frozenset({"read"}))
        store.engine.dispose()
        gateway, url = _start_gateway(supervisor, data_dir, args.profile)
        charging_pid = next(p.pid for p in supervisor.processes if p.spec.name == "charging")

        channel = grpc.aio.insecure_channel(state.address_of("charging") or "")
        stub = charging_pb2_grpc.ChargingServiceStub(channel)
        request = charging_pb2.GetBalanceRequest(account_id=account_id)
        token = (("authorization", f"Bearer {state.token()}"),)

        async def direct() -> None:
            await stub.GetBalance(request, metadata=token)

        path = f"/v1/accounts/{account_id}/balance"
        raw = RawHttp(url, path, {"Authorization": f"Bearer {key}"})
        await raw.get()  # raises unless 200
        through_gateway = raw.get
        rows = []
        for round_no in range(1, max(1, args.rounds) + 1):
            for name, call, pids in (
                ("grpc direct", direct, [charging_pid]),
                ("http via gateway", through_gateway, [gateway.pid, charging_pid]),
            ):
                row = await _measure(name, call, pids, args)
                rows.append({"round": round_no, **row})
        await channel.close()
        await raw.close()
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=10)
        supervisor.stop()
    rounds = [rows[i : i + 2] for i in range(0, len(rows), 2)]
    ratios = [r for r in (_ratios(d, g) for d, g in rounds) if r is not None]
    ratio = statistics.median(r[0] for r in ratios) if ratios else None
    gateway_only = statistics.median(r[1] for r in ratios) if ratios else None
    added = statistics.median(r[2] for r in ratios) if ratios else None
    return {
        "rows": rows,
        "round_ratios": ratios,
        "ratio_per_core": ratio,
        "gateway_process_ratio_per_core": gateway_only,
        "added_p50_ms": added,
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def _ratios(
    direct_row: dict[str, Any], gateway_row: dict[str, Any]
) -> tuple[float, float, float] | None:
    """One round's (whole path per core, gateway process alone per core, added p50 ms)."""
    direct, through, alone = (
        direct_row["per_server_core"],
        gateway_row["per_server_core"],
        gateway_row["per_first_server_core"],
    )
    p50_direct, p50_gateway = direct_row["paced_p50_ms"], gateway_row["paced_p50_ms"]
    if not (direct and through and alone) or p50_direct is None or p50_gateway is None:
        return None
    return through / direct, alone / direct, p50_gateway - p50_direct


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _format(result: dict[str, Any]) -> str:
    lines = [
        "| round | path | calls/s | server CPU | client CPU | others CPU | per server core "
        "| p50 at peak | paced p50 | paced p95 | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        cpu = " + ".join(_pct(value) for value in row["server_cpu_percent"])
        per_core = row["per_server_core"]
        lines.append(
            f"| {row['round']} | {row['path']} | {row['rate']:.0f} | {cpu} "
            f"| {_pct(row['client_cpu_percent'])} "
            f"| {_pct(row['others_cpu_percent'])} | {per_core:.0f} "
            f"| {row['peak_p50_ms']:.2f} ms | {row['paced_p50_ms']:.2f} ms "
            f"| {row['paced_p95_ms']:.2f} ms | {row['errors']} |"
        )
    ratio, added = result["ratio_per_core"], result["added_p50_ms"]
    alone = result["gateway_process_ratio_per_core"]
    lines.append("")
    if ratio is not None and added is not None and alone is not None:
        each = ", ".join(f"{r[0]:.2f}" for r in result["round_ratios"])
        lines.append(
            f"per core, HTTP via gateway (gateway + charging CPU) / gRPC direct (charging CPU): "
            f"{ratio:.2f} (median of rounds: {each}); gateway process alone / gRPC direct: "
            f"{alone:.2f}; added p50 (paced): {added:.2f} ms"
        )
    else:
        lines.append("ratio or latency missing")
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
