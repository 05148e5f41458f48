"""Command line for the gRPC baseline: ``python -m bench.grpc_baseline [--help]``.

Defaults take about 45 s: three telemetry modes x (start, 1 s warm-up, three 4 s phases);
``--repeat N`` multiplies that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common.echo_server import TELEMETRY_MODES, TelemetryMode
from bench.grpc_baseline import (
    BaselineSettings,
    EchoBaseline,
    format_notes,
    format_summary,
    format_table,
    measure_echo,
    to_json,
)


def _modes(text: str) -> list[TelemetryMode]:
    modes: list[TelemetryMode] = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name not in TELEMETRY_MODES:
            raise argparse.ArgumentTypeError(
                f"unknown telemetry mode {name!r}; choose from {', '.join(TELEMETRY_MODES)}"
            )
        modes.append(name)  # type: ignore[arg-type]  # checked just above
    if not modes:
        raise argparse.ArgumentTypeError("name at least one telemetry mode")
    return modes


def _parser() -> argparse.ArgumentParser:
    defaults = BaselineSettings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc_baseline",
        description="Throughput and latency of a trivial echo RPC on the kit's gRPC server, "
        "with and without telemetry; server in a child process, client here, loopback only.",
    )
    parser.add_argument(
        "--telemetry",
        type=_modes,
        default=list(TELEMETRY_MODES),
        help="comma-separated modes to measure: off (OTEL_SDK_DISABLED), on (spans to a "
        "counting exporter), otlp (spans over OTLP/gRPC to a local sink); default: all",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration_s,
        help="seconds per measured phase (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=defaults.warmup_s,
        help="seconds of unmeasured load first (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="unary calls in flight for the peak run (default %(default)s)",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=defaults.open_fraction,
        help="paced run's rate as a fraction of the peak (default %(default)s)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=defaults.streams,
        help="concurrent EchoStream calls (default %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=defaults.window,
        help="messages in flight per stream (default %(default)s)",
    )
    parser.add_argument(
        "--payload-bytes",
        type=int,
        default=defaults.payload_bytes,
        help="payload size (default %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds through all modes (interleaved, so a noisy spell hits every mode "
        "alike); with more than one, a table of medians follows (default %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the figures as JSON (bench/out/ is git-ignored)",
    )
    return parser


def _environment() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "opentelemetry-sdk": version("opentelemetry-sdk"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


async def _run(
    modes: list[TelemetryMode], settings: BaselineSettings, repeat: int
) -> list[EchoBaseline]:
    results = []
    for round in range(1, repeat + 1):
        for mode in modes:
            print(f"measuring telemetry={mode} (round {round}/{repeat}) ...", file=sys.stderr)
            results.append(await measure_echo(mode, settings, round=round))
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or not 0 < args.fraction <= 1 or args.repeat < 1:
        print(
            "need --duration > 0, --concurrency >= 1, 0 < --fraction <= 1 and --repeat >= 1",
            file=sys.stderr,
        )
        return 2
    settings = BaselineSettings(
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        open_fraction=args.fraction,
        streams=args.streams,
        window=args.window,
        payload_bytes=args.payload_bytes,
    )
    environment = _environment()
    # A hard stop well past the expected time, should a child hang.
    rounds = len(args.telemetry) * args.repeat
    budget = rounds * (settings.warmup_s + 3 * settings.duration_s + 30) + 30
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(_run(args.telemetry, settings, args.repeat), budget))
    except TimeoutError:
        print(f"gave up after {budget:.0f}s", file=sys.stderr)
        return 1
    environment["seconds"] = round(time.monotonic() - started, 1)
    environment["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print()
    print(
        f"gRPC echo baseline  {environment['date']}  python {environment['python']}  "
        f"grpcio {environment['grpcio']}  {environment['cpus']} CPUs  "
        f"load avg at start {environment['loadavg_at_start']}"
    )
    print(
        f"payload {settings.payload_bytes} B, {settings.duration_s:g} s per phase, "
        "loopback, 1 connection; latencies in ms; CPU in % of one core;\n"
        "'others CPU' = the rest of the machine (neighbours, OTLP sink, steal) meanwhile;\n"
        "'per server core' = rate / server CPU share (what one busy server core answers)"
    )
    print()
    print(format_table(results))
    print()
    if args.repeat > 1:
        print(f"Medians over {args.repeat} rounds")
        print(format_summary(results))
        print()
    print(format_notes(results))
    print(f"total {environment['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(results, environment) + "\n")
        print(f"wrote {args.json}")
    failed = any(p.run.errors for r in results for p in (r.peak, r.paced, r.stream))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
