"""An embedded OTLP/gRPC trace receiver: where the suite's spans go on a laptop.

``reckon up`` runs it in the supervisor process unless ``OTEL_EXPORTER_OTLP_ENDPOINT``
points at a real collector. It implements the standard OTLP trace service, so the
services export to it exactly as they would to a collector or Jaeger. It keeps the
latest spans in memory (bounded) for tests and ``reckon demo``, and appends every
span as one JSON line to ``traces.jsonl`` for ``reckon trace``.

It runs on grpc's threaded server, not ``grpc.aio``, so it keeps receiving while the
caller's event loop (a test, the demo) is busy or not running at all.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_SPANS = 100_000
# traces.jsonl is rotated once (to traces.1.jsonl) past this size, so a suite left
# running for days does not fill the disk.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
ROTATED_SUFFIX = ".1"


@dataclass(frozen=True)
class ReceivedSpan:
    """One finished span as the receiver stores it (ids as lowercase hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # "server", "client", "internal", "producer", "consumer"
    service: str
    start_unix_nano: int
    end_unix_nano: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: str = "unset"  # "unset", "ok", "error"
    status_message: str = ""
    scope: str = ""

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_unix_nano - self.start_unix_nano) / 1e6

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, line: str) -> ReceivedSpan:
        raw = json.loads(line)
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


def _any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {pair.key: _any_value(pair.value) for pair in pairs}


def _kind(span: trace_pb2.Span) -> str:
    # SPAN_KIND_SERVER -> "server"
    return trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower()


def _status(span: trace_pb2.Span) -> str:
    return trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_").lower()


def spans_from_request(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> list[ReceivedSpan]:
    """Flatten an OTLP export request into spans labelled with their service."""
    received: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "unknown")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_kind(span),
                        service=service,
                        start_unix_nano=span.start_time_unix_nano,
                        end_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        status_code=_status(span),
                        status_message=span.status.message,
                        scope=scope_spans.scope.name,
                    )
                )
    return received


class SpanStore:
    """The latest spans in memory, optionally mirrored to a JSON-lines file."""

    def __init__(
        self,
        *,
        max_spans: int = DEFAULT_MAX_SPANS,
        traces_file: Path | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self._spans: deque[ReceivedSpan] = deque(maxlen=max_spans)
        self._changed = threading.Condition()
        self._traces_file = traces_file
        self._max_file_bytes = max_file_bytes
        self._file: TextIO | None = None
        self.received = 0

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self.received += len(spans)
            self._append(spans)
            self._changed.notify_all()

    def _append(self, spans: list[ReceivedSpan]) -> None:
        if self._traces_file is None or not spans:
            return
        try:
            if self._file is None:
                self._traces_file.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._traces_file.open("a", encoding="utf-8")
            self._file.write("".join(span.to_json() + "\n" for span in spans))
            # Flushed per batch: `reckon trace` in another process reads the file live.
            self._file.flush()
            if self._file.tell() > self._max_file_bytes:
                self._file.close()
                self._file = None
                self._traces_file.replace(rotated_path(self._traces_file))
        except OSError:
            # Losing the file copy must not make exporters retry or the suite fail.
            log.exception("cannot write spans to %s", self._traces_file)

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._changed:
            if trace_id is None:
                return list(self._spans)
            return [span for span in self._spans if span.trace_id == trace_id]

    def wait_for(
        self,
        trace_id: str,
        complete: Callable[[list[ReceivedSpan]], bool],
        timeout: float,
    ) -> list[ReceivedSpan]:
        """The trace's spans once ``complete`` says so, or whatever arrived by ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                spans = [span for span in self._spans if span.trace_id == trace_id]
                remaining = deadline - time.monotonic()
                if complete(spans) or remaining <= 0:
                    return spans
                self._changed.wait(remaining)

    def close(self) -> None:
        with self._changed:
            if self._file is not None:
                self._file.close()
                self._file = None


def rotated_path(traces_file: Path) -> Path:
    return traces_file.with_name(traces_file.stem + ROTATED_SUFFIX + traces_file.suffix)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: SpanStore) -> None:
        self._store = store

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._store.add(spans_from_request(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class TraceReceiver:
    """An OTLP/gRPC endpoint on loopback that feeds a ``SpanStore``."""

    def __init__(
        self,
        *,
        traces_file: Path | None = None,
        max_spans: int = DEFAULT_MAX_SPANS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = SpanStore(max_spans=max_spans, traces_file=traces_file)
        self._host = host
        self._requested_port = port
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://{self.address}"

    def start(self) -> TraceReceiver:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver"),
            # A batch of 512 spans with SQL statements can pass gRPC's 4 MB default.
            options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self.store), server
        )
        self.port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        if self.port == 0:
            raise OSError(f"trace receiver could not bind {self._host}:{self._requested_port}")
        server.start()
        self._server = server
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        self.store.close()

    def __enter__(self) -> TraceReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_spans(traces_file: Path, trace_id: str | None = None) -> Iterator[ReceivedSpan]:
    """Spans from a ``traces.jsonl`` (and its rotated predecessor), oldest first.

    Streams the file, so a large one costs no more memory than the matching spans.
    """
    for path in (rotated_path(traces_file), traces_file):
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if trace_id is not None and trace_id not in line:
                    continue  # cheap pre-filter before parsing
                try:
                    span = ReceivedSpan.from_json(line)
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut short by a crash
                if trace_id is None or span.trace_id == trace_id:
                    yield span
