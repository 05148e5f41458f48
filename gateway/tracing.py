"""One SERVER span per HTTP request, parent of the gRPC client spans (OBS-1; ADR 0076).

A pure ASGI middleware on the OpenTelemetry API, in place of
``opentelemetry-instrumentation-asgi``: that middleware built its attribute dicts, URL
and semantic-convention variants for every request whether or not the span was
recorded, wrapped ``receive`` and ``send`` and parsed the URL against its exclusion
list, about a tenth of the gateway's CPU per request (bench/RESULTS.md, "Gateway").
Here the W3C ``traceparent``/``tracestate`` (and ``baggage``) are extracted from the
raw header list with the global propagator, the span is started with the global
tracer, and the attributes are computed only when the span is recorded (sampled).

The span is named ``GET /v1/accounts/{account_id}/balance`` (method and route
template, as the HTTP semantic conventions ask) once routing has chosen a route,
``GET`` alone for paths no route matched. 5xx answers and exceptions mark it as an
error. ``http.server.request.duration`` (seconds) is recorded per request with the
method, route and status.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

Headers = list[tuple[bytes, bytes]]


class _RawHeaders(Getter[Headers]):
    """Reads the ASGI header list as it is (lower-case names, latin-1 bytes): no
    ``Headers`` object per request for the two or three keys the propagators ask for."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        if not values:
            return None
        if key.lower() == "baggage":  # the baggage propagator reads the first value only
            return [",".join(values)]
        return values

    def keys(self, carrier: Headers) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_GETTER = _RawHeaders()


def _route_of(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _request_attributes(scope: Scope, method: str) -> dict[str, Any]:
    """What a recorded span says about the request (stable HTTP semantic conventions)."""
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scope.get("scheme", "http"),
        "url.path": scope.get("path", ""),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if scope.get("query_string"):
        # Query strings of this API carry ids and page tokens, never credentials.
        attributes["url.query"] = scope["query_string"].decode("latin-1")
    server = scope.get("server")
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
            break
    return attributes


class ServerSpanMiddleware:
    """Outermost: every HTTP request but probes and static files is one SERVER span,
    current while the app runs, so the service calls' CLIENT spans are its children."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_prefixes: Iterable[str] = ("/healthz", "/static/"),
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.app = app
        self._excluded = tuple(excluded_prefixes)
        # The global providers unless given (tests pass their own): looked up once;
        # the API's proxies follow a provider installed later.
        self._tracer = trace.get_tracer("reckon.gateway.http", tracer_provider=tracer_provider)
        meter = metrics.get_meter("reckon.gateway.http", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self._excluded):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "_OTHER"
        parent = propagate.extract(scope["headers"], getter=_GETTER)
        name = "HTTP" if method == "_OTHER" else method
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        recording = span.is_recording()
        if recording:
            span.set_attributes(_request_attributes(scope, method))
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = context.attach(trace.set_span_in_context(span, parent))
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            context.detach(token)
            route = _route_of(scope)
            outcome: dict[str, Any] = {"http.request.method": method}
            if route is not None:
                outcome["http.route"] = route
            if status:
                outcome["http.response.status_code"] = status
            if failure is not None or status >= 500 or not status:
                outcome["error.type"] = (
                    type(failure).__qualname__ if failure is not None else str(status or 500)
                )
            if recording:
                if route is not None:
                    span.update_name(f"{name} {route}")
                span.set_attributes(outcome)
                if "error.type" in outcome:
                    if failure is not None:
                        span.record_exception(failure)
                    span.set_status(StatusCode.ERROR)
            span.end()
            self._duration.record(time.perf_counter() - started, outcome)
