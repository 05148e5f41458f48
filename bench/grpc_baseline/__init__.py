"""The gRPC baseline: what a do-nothing echo RPC costs on the kit's server bootstrap.

For each telemetry mode (see ``bench.common.echo_server``) a fresh echo server
process is started, and this process, the client, measures over one loopback
HTTP/2 connection (``grpc.aio``, the service token sent as call metadata, no
client interceptors, so the client stays cheap):

1. unary peak: closed loop at ``concurrency`` calls in flight -> calls/s and the
   latency at that peak;
2. unary at a fraction (default half) of that peak, open loop (paced, latency
   from each call's due time) -> the latency a server sees when not saturated;
3. bidirectional streaming: ``streams`` EchoStream calls with ``window`` messages
   in flight each -> messages/s.

Later benchmarks import ``measure_echo`` to record the ceiling in the same run as
their own figures, so both see the same (noisy, shared) machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from bench.common.cpu import CpuMeter, MachineMeter
from bench.common.echo_server import EchoServer, TelemetryMode, echo_server
from bench.common.loadgen import (
    LatencySummary,
    RunResult,
    closed_loop,
    open_loop,
    stream_pipelined,
)
from reckon.echo.v1 import echo_pb2, echo_pb2_grpc


@dataclass(frozen=True)
class BaselineSettings:
    duration_s: float = 4.0  # per measured phase
    warmup_s: float = 1.0
    concurrency: int = 32
    open_fraction: float = 0.5  # of the measured peak, for the paced run
    # 8x16 gave the most messages/s here; the client is the busier side at that point.
    streams: int = 8
    window: int = 16  # messages in flight per stream
    payload_bytes: int = 32
    max_calls: int = 500_000  # per phase: a hard bound besides the duration


@dataclass
class Phase:
    """One measured run with the CPU each side used during it (% of one core)."""

    name: str
    run: RunResult
    server_cpu: float | None  # all server processes together
    client_cpu: float | None
    others_cpu: float | None = None  # everything else on the machine, neighbours included
    server_cpu_each: tuple[float | None, ...] = ()  # per server process, when several


@dataclass
class EchoBaseline:
    """All phases for one telemetry mode, and the server's own counts as a cross-check."""

    telemetry: TelemetryMode
    settings: BaselineSettings
    peak: Phase
    paced: Phase
    stream: Phase
    server_counts: dict[str, Any] = field(default_factory=dict)
    spans: int | None = None
    round: int = 1

    @property
    def phases(self) -> tuple[Phase, Phase, Phase]:
        return (self.peak, self.paced, self.stream)

    def as_dict(self) -> dict[str, Any]:
        def phase(p: Phase) -> dict[str, Any]:
            latency = p.run.latency
            return {
                "name": p.name,
                "rate_per_s": round(p.run.rate, 1),
                "target_rate_per_s": p.run.target_rate,
                "ok": p.run.ok,
                "errors": p.run.errors,
                "shed": p.run.shed,
                "first_error": p.run.first_error,
                "latency_ns": asdict(latency) if latency else None,
                "server_cpu_percent": p.server_cpu,
                "client_cpu_percent": p.client_cpu,
                "others_cpu_percent": p.others_cpu,
            }

        return {
            "telemetry": self.telemetry,
            "round": self.round,
            "settings": asdict(self.settings),
            "peak": phase(self.peak),
            "paced": phase(self.paced),
            "stream": phase(self.stream),
            "server_counts": self.server_counts,
            "spans_recorded": self.spans,
        }


async def measure_phase(
    name: str,
    server_pids: int | Sequence[int],
    load: Awaitable[RunResult],
    *,
    helper_pids: Sequence[int] = (),
) -> Phase:
    """Run ``load`` metering CPU: the server's (summed over its processes, e.g. worker
    processes sharing a port), this process's, and everyone else's."""
    pids = (server_pids,) if isinstance(server_pids, int) else tuple(server_pids)
    server_meters, client_meter = [CpuMeter(pid) for pid in pids], CpuMeter()
    machine = MachineMeter((*pids, *helper_pids))
    machine.start()
    for meter in server_meters:
        meter.start()
    client_meter.start()
    run = await load
    each = tuple(meter.stop() for meter in server_meters)
    server_cpu = None if None in each else sum(c for c in each if c is not None)
    return Phase(
        name,
        run,
        server_cpu,
        client_meter.stop(),
        machine.stop(),
        server_cpu_each=each if len(each) > 1 else (),
    )


async def _wait_ready(channel: grpc.aio.Channel, timeout_s: float = 10.0) -> None:
    await asyncio.wait_for(channel.channel_ready(), timeout_s)


async def measure_against(server: EchoServer, settings: BaselineSettings) -> list[Phase]:
    """The three phases against a running echo server (any telemetry mode)."""
    payload = b"x" * settings.payload_bytes
    request = echo_pb2.EchoRequest(payload=payload)
    stream_request = echo_pb2.EchoStreamRequest(payload=payload)
    metadata = server.metadata
    helpers = [server.sink.pid] if server.sink is not None else []
    async with grpc.aio.insecure_channel(server.address) as channel:
        await _wait_ready(channel)
        stub = echo_pb2_grpc.EchoServiceStub(channel)

        async def unary() -> Any:
            return await stub.Echo(request, metadata=metadata)

        if settings.warmup_s > 0:
            await closed_loop(unary, concurrency=settings.concurrency, duration_s=settings.warmup_s)
        peak = await measure_phase(
            f"unary peak, {settings.concurrency} in flight",
            server.pid,
            closed_loop(
                unary,
                concurrency=settings.concurrency,
                duration_s=settings.duration_s,
                max_calls=settings.max_calls,
            ),
            helper_pids=helpers,
        )
        rate = peak.run.rate * settings.open_fraction
        paced = await measure_phase(
            f"unary paced at {settings.open_fraction:.0%} of peak",
            server.pid,
            open_loop(
                unary,
                rate=max(rate, 1.0),
                duration_s=min(settings.duration_s, settings.max_calls / max(rate, 1.0)),
                max_in_flight=max(256, 8 * settings.concurrency),
            ),
            helper_pids=helpers,
        )
        stream = await measure_phase(
            f"bidi stream, {settings.streams}x{settings.window} in flight",
            server.pid,
            stream_pipelined(
                lambda: stub.EchoStream(metadata=metadata),
                lambda: stream_request,
                streams=settings.streams,
                window=settings.window,
                duration_s=settings.duration_s,
                eof=grpc.aio.EOF,
                max_messages=settings.max_calls * 10,
            ),
            helper_pids=helpers,
        )
    return [peak, paced, stream]


async def measure_echo(
    telemetry: TelemetryMode, settings: BaselineSettings | None = None, *, round: int = 1
) -> EchoBaseline:
    """Start an echo server with ``telemetry``, measure it, stop it."""
    settings = settings or BaselineSettings()
    async with echo_server(telemetry) as server:
        peak, paced, stream = await measure_against(server, settings)
    final = dict(server.process.final)
    return EchoBaseline(
        telemetry=telemetry,
        settings=settings,
        peak=peak,
        paced=paced,
        stream=stream,
        server_counts=final,
        spans=server.spans_recorded(),
        round=round,
    )


def _ms(ns: float) -> str:
    return f"{ns / 1_000_000:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def per_server_core(phase: Phase) -> float | None:
    """Rate per second of server CPU: what one fully busy server core would answer.

    Steadier than the raw rate on a shared machine: when neighbours take CPU from
    the server, its rate and its CPU share fall together.
    """
    if not phase.server_cpu:
        return None
    return phase.run.rate * 100 / phase.server_cpu


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _render(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """Columns padded to width; the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            out.append("")
        out.append(line(row))
        previous = row[0]
    return "\n".join(out)


def _label(result: EchoBaseline, results: Sequence[EchoBaseline]) -> str:
    repeated = sum(r.telemetry == result.telemetry for r in results) > 1
    return f"{result.telemetry} #{result.round}" if repeated else result.telemetry


def format_table(results: Sequence[EchoBaseline]) -> str:
    """Every measured phase: one row per telemetry mode (and round) and phase."""
    header = (
        "telemetry",
        "phase",
        "rate/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "server CPU",
        "client CPU",
        "others CPU",
        "per server core",
    )
    rows: list[tuple[str, ...]] = []
    for result in results:
        for phase in result.phases:
            latency = phase.run.latency
            errors = str(phase.run.errors) + (
                f" (+{phase.run.shed} shed)" if phase.run.shed else ""
            )
            rate = f"{phase.run.rate:,.0f}"
            if phase.run.target_rate is not None:
                rate += f" (of {phase.run.target_rate:,.0f})"
            rows.append(
                (
                    _label(result, results),
                    phase.name,
                    rate,
                    _ms(latency.p50_ns) if latency else "-",
                    _ms(latency.p95_ns) if latency else "-",
                    _ms(latency.p99_ns) if latency else "-",
                    _ms(latency.max_ns) if latency else "-",
                    errors,
                    _pct(phase.server_cpu),
                    _pct(phase.client_cpu),
                    _pct(phase.others_cpu),
                    _count(per_server_core(phase)),
                )
            )
    return _render(header, rows)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _median_ms(
    latencies: Sequence[LatencySummary | None], pick: Callable[[LatencySummary], int]
) -> str:
    value = _median([pick(lat) if lat else None for lat in latencies])
    return "-" if value is None else _ms(value)


def _by_mode(results: Sequence[EchoBaseline]) -> dict[str, list[EchoBaseline]]:
    grouped: dict[str, list[EchoBaseline]] = {}
    for result in results:
        grouped.setdefault(result.telemetry, []).append(result)
    return grouped


def format_summary(results: Sequence[EchoBaseline]) -> str:
    """Medians over rounds (with the best rate), per telemetry mode and phase."""
    header = (
        "telemetry",
        "phase",
        "rounds",
        "median rate/s",
        "best rate/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "per server core",
    )
    rows: list[tuple[str, ...]] = []
    for mode, rounds in _by_mode(results).items():
        for index, name in enumerate(p.name for p in rounds[0].phases):
            phases = [r.phases[index] for r in rounds]
            latencies = [p.run.latency for p in phases]

            rows.append(
                (
                    mode,
                    name.replace(" of peak", " of peak (each round's)"),
                    str(len(phases)),
                    _count(_median([p.run.rate for p in phases])),
                    _count(max(p.run.rate for p in phases)),
                    _median_ms(latencies, lambda lat: lat.p50_ns),
                    _median_ms(latencies, lambda lat: lat.p95_ns),
                    _median_ms(latencies, lambda lat: lat.p99_ns),
                    _count(_median([per_server_core(p) for p in phases])),
                )
            )
    return _render(header, rows)


def format_notes(results: Sequence[EchoBaseline]) -> str:
    """Telemetry's cost relative to 'off' (medians), and the server's counts as a check."""
    notes = []
    grouped = _by_mode(results)

    def medians(mode: str) -> tuple[float | None, float | None, float | None]:
        rounds = grouped[mode]
        return (
            _median([r.peak.run.rate for r in rounds]),
            _median([per_server_core(r.peak) for r in rounds]),
            _median([r.stream.run.rate for r in rounds]),
        )

    for result in results:
        counts = result.server_counts
        spans = "-" if result.spans is None else f"{result.spans:,}"
        notes.append(
            f"{_label(result, results)}: server answered {counts.get('calls', 0):,} unary calls "
            f"and {counts.get('stream_messages', 0):,} stream messages; spans recorded: {spans}"
        )
    if "off" in grouped:
        base = medians("off")
        for mode in grouped:
            if mode == "off":
                continue
            changes = [
                f"{label} {value / reference - 1:+.0%}"
                for label, value, reference in zip(
                    ("peak unary calls/s", "unary calls per server core", "stream messages/s"),
                    medians(mode),
                    base,
                    strict=True,
                )
                if value and reference
            ]
            notes.append(f"{mode} vs off: " + "; ".join(changes))
    return "\n".join(notes)


def to_json(results: Sequence[EchoBaseline], environment: dict[str, Any]) -> str:
    return json.dumps(
        {"environment": environment, "results": [r.as_dict() for r in results]}, indent=2
    )
