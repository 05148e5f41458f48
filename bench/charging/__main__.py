"""``python -m bench.charging``: charging's hot path measured side by side with its floors.

One run, one machine, each figure next to what it is compared with:

1. **unary Update** (debit the used units + reserve more: one Lua script, a share
   of a SQL group commit, pricing twice) at its peak (closed loop, 32 in flight)
   and paced at half that peak (open loop, latency from each call's due time),
   against the echo baseline of ``bench.grpc_baseline`` on the same kit bootstrap
   (telemetry off for both). Goals: >= 0.6 of echo's peak; p99 < 10 ms paced.
2. **StreamCreditControl** (Updates on many sessions, answers correlated by session
   id and request number) and **StreamCreditControlBatches** (the same, 64 requests
   per message each way; ~512 requests in flight for both) against the same
   ``credit_control.lua`` called pipelined straight from redis-py in this process
   (the Redis floor). Goal: >= 0.4.
3. **live sessions**: the cost of one Update with 10 live sessions and again after
   100,000 more sessions hold reservations. Goal: within 20% (rate, and server CPU
   per request).

The server is ``bench.charging.server`` in a child process (SQLite ledger in a
temp directory unless ``--database-url``), Redis a child ``redis-server`` on a free
port; both are stopped by the PIDs started here. ``--workers N`` runs N server
processes on one ``SO_REUSEPORT`` port (``CHARGING_WORKERS=N``), calls them over N
client channels (one connection on each worker: the kernel picks the worker of a
connection, so channels are opened until each worker holds one) and sums the
server CPU over all of them. Figures per server core are the steadier
ones on a shared machine (see bench/RESULTS.md, "How to read").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.type import money_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.charging.server import WORKER_HEALTH_SERVICE
from bench.common.loadgen import NS_PER_S, LatencySummary, RunResult, closed_loop, open_loop
from bench.common.processes import Child, child_process
from bench.grpc_baseline import BaselineSettings, Phase, measure_echo, measure_phase
from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.adapters.redis_store import RedisBalanceStore, prefix
from services.common.grpc_server import TOKEN_METADATA_KEY
from suite.redis_server import EmbeddedRedis

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
VOICE = 1
TARIFFS = {"voice": {"price": "0.10", "currency": "EUR", "per_units": 60, "increment": 60}}


@dataclass(frozen=True)
class Settings:
    duration_s: float = 4.0
    warmup_s: float = 1.0
    concurrency: int = 32
    open_fraction: float = 0.5
    streams: int = 4
    window: int = 128  # requests in flight per stream, plain or batched
    batch: int = 64  # requests per StreamCreditControlBatches message
    accounts: int = 1000
    live_sessions: int = 100_000
    floor_pipeline: int = 128
    floor_pipelines: int = 4
    database_url: str | None = None
    workers: int = 1
    batch_wait_turns: int = 0  # CHARGING_BATCH_WAIT_TURNS of the server


Stub = charging_pb2_grpc.ChargingServiceStub


@dataclass
class ChargingServer:
    address: str
    token: str
    processes: list[Child]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TOKEN_METADATA_KEY, f"Bearer {self.token}"),)


@asynccontextmanager
async def charging_server(
    redis_url: str, data_dir: str, settings: Settings
) -> AsyncIterator[ChargingServer]:
    """``settings.workers`` server processes on one port: the first on a free port
    (migrating the database), then the others on the port it got."""
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHARGING_"))}
    env.update(
        {
            "RECKON_SERVICE_TOKEN": token,
            "REDIS_URL": redis_url,
            "RECKON_DATA_DIR": data_dir,
            "CHARGING_LISTEN": "127.0.0.1:0",
            "CHARGING_WORKERS": str(settings.workers),
            "CHARGING_BATCH_WAIT_TURNS": str(settings.batch_wait_turns),
            "CHARGING_TARIFFS": json.dumps(TARIFFS),
            "OTEL_SDK_DISABLED": "true",
            "RECKON_LOG_LEVEL": "WARNING",
        }
    )
    if settings.database_url:
        env["CHARGING_DATABASE_URL"] = settings.database_url
    argv = [sys.executable, "-m", "bench.charging.server"]
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            child_process("charging-server", argv, env=env, cwd=PROJECT_ROOT, ready_timeout_s=60)
        )
        address = f"127.0.0.1:{first.ready['port']}"
        processes = [first]
        for worker in range(1, settings.workers):
            processes.append(
                await stack.enter_async_context(
                    child_process(
                        f"charging-worker-{worker}",
                        argv,
                        env={**env, "CHARGING_LISTEN": address, "BENCH_WORKER": str(worker)},
                        cwd=PROJECT_ROOT,
                        ready_timeout_s=60,
                    )
                )
            )
        yield ChargingServer(address, token, processes)


@asynccontextmanager
async def no_work_server() -> AsyncIterator[ChargingServer]:
    """``bench.charging.no_work_server``: charging's messages, gRPC and the kit, no work."""
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHARGING_"))}
    env.update({"RECKON_SERVICE_TOKEN": token, "OTEL_SDK_DISABLED": "true"})
    async with child_process(
        "no-work-server",
        [sys.executable, "-m", "bench.charging.no_work_server"],
        env=env,
        cwd=PROJECT_ROOT,
        ready_timeout_s=30,
    ) as process:
        yield ChargingServer(f"127.0.0.1:{process.ready['port']}", token, [process])


async def no_work_phase(settings: Settings) -> Phase:
    """Unary Updates against the no-work server, as the unary peak runs them."""
    async with no_work_server() as bare, client_stubs(bare.address, 1) as stubs:
        sessions = [(f"nw-{i}", "nobody") for i in range(settings.concurrency * 8)]
        call = unary_call(stubs, bare.metadata, SessionPool(sessions))
        await closed_loop(call, concurrency=settings.concurrency, duration_s=settings.warmup_s)
        return await measure_phase(
            f"unary CreditControl answered with no work, {settings.concurrency} in flight",
            bare.pids,
            closed_loop(call, concurrency=settings.concurrency, duration_s=settings.duration_s),
        )


async def _worker_of(channel: grpc.aio.Channel, workers: int) -> int | None:
    """Which server process this channel's connection reached (``bench.charging.server``
    marks a health service with its index)."""
    health = health_pb2_grpc.HealthStub(channel)
    for worker in range(workers):
        try:
            reply = await health.Check(
                health_pb2.HealthCheckRequest(service=WORKER_HEALTH_SERVICE.format(worker)),
                timeout=10,
            )
        except grpc.aio.AioRpcError:
            continue  # NOT_FOUND: another worker
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return worker
    return None


@asynccontextmanager
async def client_stubs(address: str, workers: int) -> AsyncIterator[list[Stub]]:
    """One stub per server process, each over a channel with a connection of its own
    (a local subchannel pool: channels to one address would otherwise share one). The
    kernel picks the process of each connection, so channels are opened until every
    process holds one; those that land on a process already held are closed."""
    async with AsyncExitStack() as stack:
        by_worker: dict[int, Stub] = {}
        for _ in range(30 * workers):
            if len(by_worker) == workers:
                break
            channel = grpc.aio.insecure_channel(
                address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            await asyncio.wait_for(channel.channel_ready(), 30)
            worker = await _worker_of(channel, workers) if workers > 1 else 0
            if worker is None or worker in by_worker:
                await channel.close()
                continue
            stack.push_async_callback(channel.close)
            by_worker[worker] = Stub(channel)
        if len(by_worker) < workers:
            raise RuntimeError(f"connections reached {len(by_worker)} of {workers} workers")
        yield [by_worker[worker] for worker in sorted(by_worker)]


def eur(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=units)


def update(session: str, number: int, account: str) -> pb.CreditControlRequest:
    return pb.CreditControlRequest(
        session_id=session,
        request_type=pb.REQUEST_TYPE_UPDATE if number else pb.REQUEST_TYPE_INITIAL,
        request_number=number,
        account_id=account,
        multiple_services=[
            pb.MultipleServicesCreditControl(
                rating_group=VOICE,
                requested_units=pb.Quantity(time_seconds=60),
                used_units=pb.Quantity(time_seconds=60) if number else None,
            )
        ],
    )


class SessionPool:
    """Sessions not in flight; each taken one gets its next request number."""

    def __init__(self, sessions: list[tuple[str, str]]) -> None:
        self._free: deque[tuple[str, str]] = deque(sessions)
        self._next: dict[str, int] = {session: 1 for session, _ in sessions}

    def take(self) -> pb.CreditControlRequest:
        session, account = self._free.popleft()
        number = self._next[session]
        self._next[session] = number + 1
        request = update(session, number, account)
        return request

    def give_back(self, session: str, account: str) -> None:
        self._free.append((session, account))


async def setup(stub: Stub, metadata: Any, accounts: int) -> list[str]:
    await stub.DefineService(
        pb.DefineServiceRequest(
            service=pb.ServiceDefinition(
                rating_group=VOICE,
                service="voice",
                unit_kind=pb.UNIT_KIND_TIME,
                charging=pb.SERVICE_CHARGING_RATED,
            )
        ),
        metadata=metadata,
    )
    names = [f"bench-{i}" for i in range(accounts)]

    async def one(name: str) -> None:
        await stub.SetAccountPolicy(
            pb.SetAccountPolicyRequest(
                policy=pb.AccountPolicy(
                    account_id=name, billing_mode=pb.BILLING_MODE_PREPAID, currency_code="EUR"
                )
            ),
            metadata=metadata,
        )
        await stub.TopUp(
            pb.TopUpRequest(
                account_id=name, amount=pb.Quantity(money=eur(100_000_000)), request_id=name
            ),
            metadata=metadata,
        )

    for start in range(0, accounts, 50):
        await asyncio.gather(*(one(n) for n in names[start : start + 50]))
    return names


async def open_sessions(stub: Stub, metadata: Any, sessions: list[tuple[str, str]]) -> None:
    for start in range(0, len(sessions), 64):
        await asyncio.gather(
            *(
                stub.CreditControl(update(s, 0, a), metadata=metadata)
                for s, a in sessions[start : start + 64]
            )
        )


def unary_call(
    stubs: Sequence[Stub], metadata: Any, pool: SessionPool
) -> Callable[[], Awaitable[Any]]:
    """One Update per call, the calls taking the channels in turn."""
    rotation = itertools.cycle(stubs)

    async def call() -> Any:
        request = pool.take()
        try:
            answer = await next(rotation).CreditControl(request, metadata=metadata)
        finally:
            pool.give_back(request.session_id, request.account_id)
        if answer.result_code != pb.RESULT_CODE_SUCCESS:
            raise RuntimeError(f"result {answer.result_code}")
        return answer

    return call


async def stream_correlated(
    stubs: Sequence[Stub],
    metadata: Any,
    pool: SessionPool,
    *,
    streams: int,
    window: int,
    duration_s: float,
    batch: int | None = None,
) -> RunResult:
    """``streams`` streams (taking the channels in turn) with ``window`` requests in
    flight each; answers in any order, a request's latency from the write of its
    message to its answer. ``batch``: StreamCreditControlBatches with that many
    requests per message; else StreamCreditControl, one per message."""
    result = RunResult("stream")
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * NS_PER_S)
    size = batch or 1

    async def one_stream(stub: Stub) -> None:
        call = (
            stub.StreamCreditControlBatches(metadata=metadata)
            if batch
            else stub.StreamCreditControl(metadata=metadata)
        )
        in_flight = 0
        room = asyncio.Event()
        sent: dict[tuple[str, int], tuple[int, str]] = {}
        clock = time.perf_counter_ns

        async def writer() -> None:
            nonlocal in_flight
            while clock() < deadline:
                while in_flight + size > window:
                    room.clear()
                    await room.wait()
                requests = [pool.take() for _ in range(size)]
                now = clock()
                for request in requests:
                    sent[(request.session_id, request.request_number)] = (now, request.account_id)
                in_flight += size
                await call.write(
                    pb.StreamCreditControlBatchesRequest(requests=requests)
                    if batch
                    else pb.StreamCreditControlRequest(request=requests[0])
                )
            await call.done_writing()

        async def reader() -> None:
            nonlocal in_flight
            while (reply := await call.read()) is not grpc.aio.EOF:
                for answer in reply.answers if batch else (reply,):
                    began, account = sent.pop((answer.session_id, answer.request_number))
                    pool.give_back(answer.session_id, account)
                    if answer.HasField("error"):
                        result._failed(RuntimeError(answer.error.message))
                    else:
                        result.latencies_ns.append(clock() - began)
                        result.ok += 1
                    in_flight -= 1
                room.set()

        try:
            await asyncio.gather(writer(), reader())
        except Exception as exc:  # noqa: BLE001 - recorded in the result
            call.cancel()
            result._failed(exc)

    await asyncio.gather(*(one_stream(stubs[i % len(stubs)]) for i in range(streams)))
    result.elapsed_ns = time.perf_counter_ns() - start
    return result


async def redis_floor(redis_url: str, settings: Settings) -> RunResult:
    """``credit_control.lua`` Updates pipelined straight from redis-py: the Redis floor."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisBalanceStore(client)
    script = store.scripts["credit_control"]
    await client.script_load(script.source)
    sessions = settings.floor_pipeline * settings.floor_pipelines
    accounts = [f"bench-{i}" for i in range(min(settings.accounts, 100))]
    now = int(time.time() * 1000)

    def payload(session: str, number: int, account: str) -> str:
        return json.dumps(
            {
                "t": "U" if number else "I",
                "sid": session,
                "rn": number,
                "acct": account,
                "now": now,
                "sweep": now + 330_000,
                "win": 86_400,
                "jd": 30_000,
                "rgs": [
                    {
                        "g": VOICE,
                        "svc": "voice",
                        "u": "t",
                        "fr": 0,
                        "w": 60,
                        "p": 100_000,
                        "mc": "EUR",
                        "x": 60 if number else -1,
                        "c": 100_000 if number else -1,
                        "rf": 0,
                    }
                ],
            }
        )

    def keys(account: str, session: str) -> list[str]:
        p = prefix(account)
        s = f"{p}s:{session}"
        return [p + "a", p + "bm", p + "bv", s, p + "x", p + "j", s + ":h"]

    owners = {f"floor-{i}": accounts[i % len(accounts)] for i in range(sessions)}
    numbers = dict.fromkeys(owners, 0)
    pipe = client.pipeline(transaction=False)
    for session, account in owners.items():
        pipe.execute_command(
            "EVALSHA", script.sha, 7, *keys(account, session), payload(session, 0, account)
        )
    await pipe.execute()
    result = RunResult("floor")
    start = time.perf_counter_ns()
    deadline = start + int(settings.duration_s * NS_PER_S)
    names = list(owners)

    async def pipeliner(index: int) -> None:
        mine = names[index :: settings.floor_pipelines]
        while time.perf_counter_ns() < deadline:
            batch = client.pipeline(transaction=False)
            began = time.perf_counter_ns()
            for session in mine:
                numbers[session] += 1
                account = owners[session]
                batch.execute_command(
                    "EVALSHA",
                    script.sha,
                    7,
                    *keys(account, session),
                    payload(session, numbers[session], account),
                )
            answers = await batch.execute()
            took = time.perf_counter_ns() - began
            result.ok += sum(1 for a in answers if a[0] == b"OK")
            result.latencies_ns.extend([took] * len(answers))

    await asyncio.gather(*(pipeliner(i) for i in range(settings.floor_pipelines)))
    result.elapsed_ns = time.perf_counter_ns() - start
    await client.aclose()
    return result


async def create_live_sessions(redis_url: str, accounts: list[str], count: int) -> float:
    """``count`` open sessions holding reservations (INITIAL via the same script)."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisBalanceStore(client, max_batch=1000)
    now = int(time.time() * 1000)
    began = time.perf_counter()

    async def initial(i: int) -> None:
        account = accounts[i % len(accounts)]
        result = await store.credit_control(
            account,
            f"live-{i}",
            {
                "t": "I",
                "sid": f"live-{i}",
                "rn": 0,
                "acct": account,
                "now": now,
                "sweep": now + 3_600_000,
                "win": 86_400,
                "jd": 30_000,
                "rgs": [
                    {
                        "g": VOICE,
                        "svc": "voice",
                        "u": "t",
                        "fr": 0,
                        "w": 60,
                        "p": 100_000,
                        "mc": "EUR",
                        "x": -1,
                        "c": -1,
                        "rf": 0,
                    }
                ],
            },
        )
        if result.touch_ms:
            await store.touch(account, result.touch_ms)

    for start in range(0, count, 2000):
        await asyncio.gather(*(initial(i) for i in range(start, min(count, start + 2000))))
    elapsed = time.perf_counter() - began
    await client.aclose()
    return elapsed


async def stream_phase(
    name: str,
    prefix: str,
    server: ChargingServer,
    stubs: Sequence[Stub],
    accounts: list[str],
    settings: Settings,
    *,
    batch: int | None = None,
) -> Phase:
    """A streaming phase on sessions of its own, twice as many as are in flight."""
    sessions = [
        (f"{prefix}-{i}", accounts[i % len(accounts)])
        for i in range(settings.streams * settings.window * 2)
    ]
    await open_sessions(stubs[0], server.metadata, sessions)
    pool = SessionPool(sessions)

    def load(duration_s: float) -> Awaitable[RunResult]:
        return stream_correlated(
            stubs,
            server.metadata,
            pool,
            streams=settings.streams,
            window=settings.window,
            duration_s=duration_s,
            batch=batch,
        )

    await load(settings.warmup_s)
    return await measure_phase(name, server.pids, load(settings.duration_s))


async def live_phase(
    name: str,
    server: ChargingServer,
    stubs: Sequence[Stub],
    pool: SessionPool,
    in_flight: int,
    settings: Settings,
) -> Phase:
    call = unary_call(stubs, server.metadata, pool)
    await closed_loop(call, concurrency=in_flight, duration_s=settings.warmup_s)
    return await measure_phase(
        name,
        server.pids,
        closed_loop(call, concurrency=in_flight, duration_s=settings.duration_s),
    )


@dataclass
class Report:
    rows: list[tuple[str, str, Phase]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ms(ns: int) -> str:
    return f"{ns / 1_000_000:.2f}"


def per_core(phase: Phase) -> float | None:
    return phase.run.rate * 100 / phase.server_cpu if phase.server_cpu else None


def cpu_us_per_request(phase: Phase) -> float | None:
    if not phase.server_cpu or not phase.run.rate:
        return None
    return phase.server_cpu / 100 * 1_000_000 / phase.run.rate


def render(report: Report) -> str:
    header = (
        "what",
        "phase",
        "rate/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "server CPU",
        "client CPU",
        "others CPU",
        "per server core",
        "server us/req",
    )
    lines = []
    for what, name, phase in report.rows:
        latency: LatencySummary | None = phase.run.latency
        rate = f"{phase.run.rate:,.0f}"
        if phase.run.target_rate is not None:
            rate += f" (of {phase.run.target_rate:,.0f})"

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}%"

        core = per_core(phase)
        cost = cpu_us_per_request(phase)
        lines.append(
            (
                what,
                name,
                rate,
                _ms(latency.p50_ns) if latency else "-",
                _ms(latency.p95_ns) if latency else "-",
                _ms(latency.p99_ns) if latency else "-",
                str(phase.run.errors)
                + (f" ({phase.run.first_error})" if phase.run.first_error else ""),
                pct(phase.server_cpu),
                pct(phase.client_cpu),
                pct(phase.others_cpu),
                "-" if core is None else f"{core:,.0f}",
                "-" if cost is None else f"{cost:,.0f}",
            )
        )
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [fmt(header), "  ".join("-" * w for w in widths)]
    out.extend(fmt(line) for line in lines)
    return "\n".join([*out, "", *report.notes])


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


async def run(settings: Settings) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="reckon-charging-bench-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            echo = await measure_echo(
                "off",
                BaselineSettings(
                    duration_s=settings.duration_s,
                    warmup_s=settings.warmup_s,
                    concurrency=settings.concurrency,
                ),
            )
            report.rows += [("echo", p.name, p) for p in echo.phases]
            bare = await no_work_phase(settings)
            report.rows.append(("no work", bare.name, bare))
            async with (
                charging_server(redis.url, tmp, settings) as server,
                client_stubs(server.address, settings.workers) as stubs,
            ):
                stub = stubs[0]
                metadata = server.metadata
                accounts = await setup(stub, metadata, settings.accounts)
                if settings.workers > 1:
                    # A worker that loaded its rating groups less than a second before
                    # setup defined voice looks again only after that (ServiceCatalog).
                    await asyncio.sleep(1.1)

                # 3a. ten live sessions, nothing else open yet.
                ten = [(f"few-{i}", accounts[i]) for i in range(10)]
                await open_sessions(stub, metadata, ten)
                ten_pool = SessionPool(ten)
                few = await live_phase(
                    "Update, 10 live sessions (10 in flight)",
                    server,
                    stubs,
                    ten_pool,
                    len(ten),
                    settings,
                )

                # 1. unary Update peak and paced.
                unary_sessions = [
                    (f"u-{i}", accounts[i % len(accounts)]) for i in range(settings.concurrency * 8)
                ]
                await open_sessions(stub, metadata, unary_sessions)
                pool = SessionPool(unary_sessions)
                call = unary_call(stubs, metadata, pool)
                await closed_loop(
                    call, concurrency=settings.concurrency, duration_s=settings.warmup_s
                )
                peak = await measure_phase(
                    f"unary Update peak, {settings.concurrency} in flight",
                    server.pids,
                    closed_loop(
                        call, concurrency=settings.concurrency, duration_s=settings.duration_s
                    ),
                )
                paced = await measure_phase(
                    f"unary Update paced at {settings.open_fraction:.0%} of peak",
                    server.pids,
                    open_loop(
                        call,
                        rate=max(peak.run.rate * settings.open_fraction, 1.0),
                        duration_s=settings.duration_s,
                        max_in_flight=len(unary_sessions),
                    ),
                )
                report.rows += [("charging", peak.name, peak), ("charging", paced.name, paced)]

                # 2. the streaming RPCs, and the Redis floor.
                stream = await stream_phase(
                    f"StreamCreditControl, {settings.streams}x{settings.window} in flight",
                    "st",
                    server,
                    stubs,
                    accounts,
                    settings,
                )
                batched = await stream_phase(
                    f"StreamCreditControlBatches, {settings.streams}x"
                    f"{settings.window // settings.batch}x{settings.batch} in flight",
                    "sb",
                    server,
                    stubs,
                    accounts,
                    settings,
                    batch=settings.batch,
                )
                floor = await measure_phase(
                    f"credit_control.lua via redis-py, "
                    f"{settings.floor_pipelines}x{settings.floor_pipeline} pipelined",
                    server.pids,
                    redis_floor(redis.url, settings),
                )
                report.rows += [
                    ("charging", stream.name, stream),
                    ("charging", batched.name, batched),
                    ("redis floor", floor.name, floor),
                ]

                # 3b. the same ten sessions with 100,000 more live ones.
                took = await create_live_sessions(redis.url, accounts, settings.live_sessions)
                many = await live_phase(
                    f"Update, {settings.live_sessions:,} more live sessions (10 in flight)",
                    server,
                    stubs,
                    ten_pool,
                    len(ten),
                    settings,
                )
                report.rows += [("charging", few.name, few), ("charging", many.name, many)]
                counter = aioredis.Redis.from_url(redis.url)
                live = int(await counter.eval("return #redis.call('KEYS', 'ch:{acct:*}:s:*')", 0))
                await counter.aclose()
                report.notes.append(
                    f"{settings.live_sessions:,} sessions opened in {took:.1f}s "
                    f"straight through the Lua script; {live:,} session keys at the end"
                )
        finally:
            redis.stop()
    report.notes += [
        f"unary Update peak / echo peak: {ratio(peak.run.rate, echo.peak.run.rate)} "
        f"(per server core: {ratio(per_core(peak), per_core(echo.peak))}; goal >= 0.6)",
        f"no-work CreditControl / echo, per server core: "
        f"{ratio(per_core(bare), per_core(echo.peak))} (gRPC and the kit with charging's "
        f"messages: the best the unary ratio could be); unary Update / no-work: "
        f"{ratio(per_core(peak), per_core(bare))} per server core",
        f"unary Update paced p99: {_ms(paced.run.latency.p99_ns) if paced.run.latency else '-'}"
        f" ms (goal < 10 ms)",
        f"stream / Redis floor: {ratio(stream.run.rate, floor.run.rate)} (goal >= 0.4)",
        f"batched stream / Redis floor: {ratio(batched.run.rate, floor.run.rate)} (goal >= 0.4)",
        f"10 vs {settings.live_sessions:,} live sessions: rate "
        f"{ratio(many.run.rate, few.run.rate)}, server CPU per request "
        f"{ratio(cpu_us_per_request(many), cpu_us_per_request(few))} (goal within 20%)",
    ]
    if settings.workers > 1:
        report.notes.append(
            f"{settings.workers} server processes on one port, server CPU summed; by process:"
        )
        report.notes += [
            f"  {name}: " + " / ".join("-" if c is None else f"{c:.0f}%" for c in p.server_cpu_each)
            for what, name, p in report.rows
            if what == "charging"
        ]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per phase")
    parser.add_argument("--live-sessions", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument(
        "--database-url",
        default=None,
        help="the ledger's database (default: SQLite in a temp directory)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="charging server processes on one port (CHARGING_WORKERS); N client channels",
    )
    parser.add_argument(
        "--batch-wait-turns",
        type=int,
        default=0,
        help="event-loop turns the server's shallow batches wait (CHARGING_BATCH_WAIT_TURNS)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    settings = Settings(
        duration_s=args.duration,
        live_sessions=args.live_sessions,
        accounts=args.accounts,
        database_url=args.database_url,
        workers=args.workers,
        batch_wait_turns=args.batch_wait_turns,
    )
    report = asyncio.run(run(settings))
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {
                        "what": what,
                        "phase": name,
                        "rate": phase.run.rate,
                        "latency_ns": phase.run.latency.__dict__ if phase.run.latency else None,
                        "server_cpu": phase.server_cpu,
                        "server_cpu_each": list(phase.server_cpu_each),
                        "client_cpu": phase.client_cpu,
                        "others_cpu": phase.others_cpu,
                    }
                    for what, name, phase in report.rows
                ],
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
