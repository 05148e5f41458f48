"""The echo server every gRPC benchmark measures against, run in a process of its own.

The server is the kit's own bootstrap (``services.common.grpc_server.create_server``:
OpenTelemetry server interceptor, service-token check, error mapping, health and
reflection) hosting ``reckon.echo.v1.EchoService``, whose methods do nothing but
answer. What it costs is what the kit costs per call: the ceiling for any real
service on this machine.

Telemetry modes (the OpenTelemetry interceptor is in the chain in all three):

* ``off``: ``OTEL_SDK_DISABLED=true``; ``setup_telemetry`` installs no tracer
  provider, so the interceptor only gets non-recording spans.
* ``on``: the SDK tracer provider that ``setup_telemetry`` installs, every call
  sampled (no parent, default ``parentbased_always_on``), spans handed to a
  ``BatchSpanProcessor`` (default settings) whose exporter only counts them: the
  cost of making, ending and batching spans, not of encoding or sending them.
* ``otlp``: as a service runs in docker-compose: ``BatchSpanProcessor`` ->
  OTLP/gRPC exporter -> a real local receiver (``bench.common.otlp_sink``, in a
  third process, which counts and drops). Adds encoding and export calls.

Use from a benchmark::

    async with echo_server("on") as server:
        channel = grpc.aio.insecure_channel(server.address)
        ...  # send server.metadata with each call

Run directly (``python -m bench.common.echo_server --telemetry on``) it announces
``{"port": N}`` on stdout, serves until SIGTERM, then prints what it counted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.common.processes import Child, announce, child_process
from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.grpc_server import (
    TOKEN_METADATA_KEY,
    ServiceBinding,
    create_server,
    serve,
)
from services.common.telemetry import setup_telemetry

TelemetryMode = Literal["off", "on", "otlp"]
TELEMETRY_MODES: tuple[TelemetryMode, ...] = get_args(TelemetryMode)
SERVICE_FULL_NAME = "reckon.echo.v1.EchoService"
# Children run from the project root, so `bench`, `services` and `reckon` import there.
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class EchoServicer(echo_pb2_grpc.EchoServiceServicer):
    """Answers with the payload; counts what it answered so a run can be checked."""

    def __init__(self) -> None:
        self.calls = 0
        self.stream_messages = 0

    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        self.calls += 1
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: AsyncIterator[echo_pb2.EchoStreamRequest], context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            self.stream_messages += 1
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


class CountingSpanExporter(SpanExporter):
    """An exporter that costs (almost) nothing: it counts spans and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def echo_binding(servicer: EchoServicer) -> ServiceBinding:
    return ServiceBinding(
        SERVICE_FULL_NAME, echo_pb2_grpc.add_EchoServiceServicer_to_server, servicer
    )


async def _serve(mode: TelemetryMode, listen: str, token: str) -> None:
    telemetry = setup_telemetry("bench-echo")
    exporter: CountingSpanExporter | None = None
    if mode == "on":
        if telemetry.tracer_provider is None:
            raise SystemExit("telemetry 'on' but the SDK is disabled (OTEL_SDK_DISABLED)")
        exporter = CountingSpanExporter()
        telemetry.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    servicer = EchoServicer()
    running = await create_server(
        service_name="echo", listen=listen, service_token=token, bindings=[echo_binding(servicer)]
    )
    announce(port=running.port, pid=os.getpid(), telemetry=mode)
    await serve(running, grace=1.0)
    telemetry.shutdown()  # flushes the batch processor, so every span is counted
    announce(
        calls=servicer.calls,
        stream_messages=servicer.stream_messages,
        spans_exported=exporter.spans if exporter is not None else None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--telemetry", choices=TELEMETRY_MODES, default="off")
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    token = os.environ.get("RECKON_SERVICE_TOKEN")
    if not token:
        raise SystemExit("RECKON_SERVICE_TOKEN: is required")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(args.telemetry, args.listen, token))


@dataclass
class EchoServer:
    """A running echo server process, as a client sees it."""

    address: str
    token: str
    telemetry: TelemetryMode
    process: Child
    sink: Child | None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata that authenticates with the service token."""
        return ((TOKEN_METADATA_KEY, f"Bearer {self.token}"),)

    def spans_recorded(self) -> int | None:
        """Spans that reached the exporter (after the block ends); None with telemetry off."""
        if self.sink is not None:
            value = self.sink.final.get("spans_received")
        else:
            value = self.process.final.get("spans_exported")
        return int(value) if value is not None else None


def _telemetry_env(mode: TelemetryMode, sink_port: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_SERVICE_NAME"] = "reckon-bench-echo"
    if mode == "off":
        env["OTEL_SDK_DISABLED"] = "true"
        return env
    env["OTEL_METRICS_EXPORTER"] = "none"
    if mode == "on":
        env["OTEL_TRACES_EXPORTER"] = "none"  # the counting exporter is added in the child
    else:
        env["OTEL_TRACES_EXPORTER"] = "otlp"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
        env["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
    return env


@asynccontextmanager
async def echo_server(
    telemetry: TelemetryMode = "off", *, token: str | None = None
) -> AsyncIterator[EchoServer]:
    """Start the echo server (and, for ``otlp``, the OTLP sink) in child processes."""
    token = token or secrets.token_urlsafe(24)
    async with AsyncExitStack() as stack:
        sink: Child | None = None
        if telemetry == "otlp":
            sink = await stack.enter_async_context(
                child_process(
                    "otlp-sink",
                    [sys.executable, "-m", "bench.common.otlp_sink"],
                    env=dict(os.environ),
                    cwd=PROJECT_ROOT,
                )
            )
        env = _telemetry_env(telemetry, sink.ready["port"] if sink else None)
        env["RECKON_SERVICE_TOKEN"] = token
        # Entered after the sink, so it stops (and flushes its spans) before the sink does.
        process = await stack.enter_async_context(
            child_process(
                f"echo-server[{telemetry}]",
                [sys.executable, "-m", "bench.common.echo_server", "--telemetry", telemetry],
                env=env,
                cwd=PROJECT_ROOT,
            )
        )
        yield EchoServer(
            address=f"127.0.0.1:{process.ready['port']}",
            token=token,
            telemetry=telemetry,
            process=process,
            sink=sink,
        )


if __name__ == "__main__":
    main()
