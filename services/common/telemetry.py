"""OpenTelemetry set-up shared by every service.

Configured by the standard variables: ``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
(``otlp``, ``console`` or ``none``; metrics also ``prometheus``), ``OTEL_EXPORTER_OTLP_ENDPOINT``
and ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc``, the default, or ``http/protobuf``; per signal
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``..._METRICS_PROTOCOL``). With the ``prometheus``
metrics exporter a scrape endpoint listens on ``OTEL_EXPORTER_PROMETHEUS_HOST``:
``OTEL_EXPORTER_PROMETHEUS_PORT`` (default 127.0.0.1:9464).
Unlike the SDK's auto-configuration, the exporter defaults to ``none`` when no
endpoint is set, so a service run on a laptop does not log export failures
every few seconds. gRPC server and client spans come from the interceptors in
``grpc_server``/``grpc_client``; Redis and SQLAlchemy are instrumented here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as _sqlalchemy_version
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "reckon"
_SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"


@dataclass
class Telemetry:
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


_current: Telemetry | None = None


def _exporter_choice(kind: str) -> str:
    explicit = os.environ.get(f"OTEL_{kind}_EXPORTER")
    if explicit:
        return explicit.strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT"
    )
    return "otlp" if endpoint else "none"


def _otlp_protocol(kind: str) -> str:
    """``grpc`` or ``http/protobuf``: the signal's own variable, else the general one."""
    protocol = (
        (
            os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        .strip()
        .lower()
    )
    if protocol not in {"grpc", "http/protobuf"}:
        log.warning("OTLP protocol %r is not supported; using grpc", protocol)
        return "grpc"
    return protocol


def _span_exporter(choice: str) -> SpanExporter | None:
    if choice == "otlp":
        if _otlp_protocol("TRACES") == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            return HttpSpanExporter()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if choice == "console":
        return ConsoleSpanExporter()
    return None


def _metric_reader(choice: str) -> MetricReader | None:
    if choice == "otlp":
        if _otlp_protocol("METRICS") == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            return PeriodicExportingMetricReader(HttpMetricExporter())
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    if choice == "prometheus":
        return _prometheus_reader()
    if choice == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    return None


def _prometheus_reader() -> MetricReader:
    """A reader that Prometheus scrapes, with its HTTP endpoint started in this process."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    start_http_server(port, addr=host)
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
    return PrometheusMetricReader()


def setup_telemetry(service_name: str) -> Telemetry:
    """Install tracer and meter providers for this process (idempotent)."""
    global _current
    if _current is not None:
        return _current
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        _current = Telemetry(None, None)
        return _current
    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or f"reckon-{service_name}"}
    )
    tracer_provider = TracerProvider(resource=resource)
    span_exporter = _span_exporter(_exporter_choice("TRACES"))
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)

    reader = _metric_reader(_exporter_choice("METRICS"))
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader] if reader else [])
    metrics.set_meter_provider(meter_provider)

    RedisInstrumentor().instrument(tracer_provider=tracer_provider)
    _current = Telemetry(tracer_provider, meter_provider)
    return _current


def instrument_engine(engine: Any) -> None:
    """Trace SQL statements of one SQLAlchemy engine (called by ``db.make_engine``).

    Every engine gets its own ``EngineTracer``: ``SQLAlchemyInstrumentor().instrument``
    works once per process, so a second engine (tests, several services in one
    process) would silently go untraced.
    """
    tracer = trace.get_tracer(_SQLALCHEMY_SCOPE, _sqlalchemy_version)
    usage = metrics.get_meter(_SQLALCHEMY_SCOPE, _sqlalchemy_version).create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by "
        "the state attribute.",
    )
    EngineTracer(tracer, engine, usage, False)  # type: ignore[no-untyped-call]


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION_NAME)


def meter() -> metrics.Meter:
    return metrics.get_meter(INSTRUMENTATION_NAME)


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or '' outside a trace."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""
