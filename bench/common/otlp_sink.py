"""A local OTLP/gRPC trace receiver that counts spans and throws them away.

Stands in for the OpenTelemetry collector when a benchmark wants the full cost
of exporting traces (protobuf encoding and a gRPC export call per batch, in the
server's BatchSpanProcessor thread) without a collector's own CPU on this
2-core machine. Run as ``python -m bench.common.otlp_sink``: it announces
``{"port": N}`` on stdout when ready and ``{"spans_received": N, ...}`` after
SIGTERM. Loopback only.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench.common.processes import announce


class CountingTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """Accepts every export and counts the spans in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self.exports = 0

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        with self._lock:
            self.spans += spans
            self.exports += 1
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    service = CountingTraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    announce(port=port)
    stop.wait()
    # Let an export that is on its way (the server's final flush) finish.
    server.stop(grace=5).wait()
    announce(spans_received=service.spans, exports=service.exports)


if __name__ == "__main__":
    main()
