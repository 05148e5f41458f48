"""A request through the edge is one trace (OBS-1, ADR 0076): the gateway's SERVER span
continues the caller's W3C ``traceparent`` and is the parent of its gRPC CLIENT spans,
whose context travels to the service in the call's metadata.

The real app, its store on SQLite and in-process rate limits; charging is a stand-in
stub behind the gateway's own ``TracedStub``, so no service runs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr

from gateway.app import create_app
from gateway.clients import TracedStub
from gateway.config import GatewaySettings
from reckon.charging.v1 import charging_pb2

CHARGING = "reckon.charging.v1.ChargingService"


@dataclass
class FakeCharging:
    """Answers GetBalance and keeps the metadata each call carried."""

    metadata: list[dict[str, str]] = field(default_factory=list)

    async def GetBalance(
        self,
        request: charging_pb2.GetBalanceRequest,
        *,
        metadata: Any = (),
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> charging_pb2.GetBalanceResponse:
        self.metadata.append(dict(metadata))
        return charging_pb2.GetBalanceResponse(account_id=request.account_id)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # Nothing installed yet in this process: install an SDK provider. Otherwise
        # (another test set telemetry up) the exporter joins the existing one.
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass
class Edge:
    http: TestClient
    charging: FakeCharging
    key: dict[str, str]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, spans: InMemorySpanExporter) -> Iterator[Edge]:
    data_dir: Path = tmp_path_factory.mktemp("gateway")
    settings = GatewaySettings(
        service_token=SecretStr("t" * 32),
        redis_url="redis://127.0.0.1:1",
        data_dir=data_dir,
        rate_limit_store="memory",
    )
    app = create_app(settings)
    charging = FakeCharging()
    with TestClient(app, base_url="http://testserver") as http:
        app.state.clients.charging = TracedStub(charging, CHARGING, "t" * 32)
        _, key = app.state.store.add_api_client("tracing", frozenset({"read"}))
        yield Edge(http, charging, {"Authorization": f"Bearer {key}"})


def test_a_balance_read_continues_the_callers_trace_down_to_the_service(
    edge: Edge, spans: InMemorySpanExporter
) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    spans.clear()
    answer = edge.http.get(
        "/v1/accounts/acc_1/balance",
        headers={**edge.key, "traceparent": f"00-{trace_id}-{caller}-01"},
    )
    assert answer.status_code == 200, answer.text

    finished = spans.get_finished_spans()
    (server,) = [span for span in finished if span.kind is SpanKind.SERVER]
    # (The first use of the key also reads the store: SQL client spans, not ours.)
    (client,) = [span for span in finished if span.name == f"/{CHARGING}/GetBalance"]
    assert client.kind is SpanKind.CLIENT
    assert server.name == "GET /v1/accounts/{account_id}/balance"
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == caller
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/accounts/{account_id}/balance"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/v1/accounts/acc_1/balance"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    # The service gets the client span's context (and the service token) as metadata.
    sent = edge.charging.metadata[-1]
    assert sent["traceparent"].split("-")[1:3] == [trace_id, format(client.context.span_id, "016x")]
    assert sent["authorization"] == f"Bearer {'t' * 32}"


def test_refused_and_unrouted_requests_are_spans_too_but_probes_are_not(
    edge: Edge, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    assert edge.http.get("/v1/accounts/acc_1/balance").status_code == 401
    assert edge.http.get("/v1/nowhere").status_code == 404
    assert edge.http.get("/healthz").status_code == 200
    servers = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert [span.name for span in servers] == ["GET /v1/accounts/{account_id}/balance", "GET"]
    refused = servers[0]
    assert refused.attributes is not None
    assert refused.attributes["http.response.status_code"] == 401
    assert refused.status.status_code is StatusCode.UNSET  # a 4xx is the caller's error


def test_a_new_trace_starts_without_traceparent(edge: Edge, spans: InMemorySpanExporter) -> None:
    spans.clear()
    assert edge.http.get("/v1/accounts/acc_2/balance", headers=edge.key).status_code == 200
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.parent is None
