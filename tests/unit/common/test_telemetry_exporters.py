"""Exporter choice by the standard variables: OTLP over http/protobuf, and Prometheus."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from services.common import telemetry


def test_http_protobuf_protocol_picks_the_http_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exporter = telemetry._span_exporter("otlp")
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    reader = telemetry._metric_reader("otlp")
    assert reader is not None
    assert type(reader._exporter).__module__.startswith(  # type: ignore[attr-defined]
        "opentelemetry.exporter.otlp.proto.http"
    )
    reader.shutdown()


def test_signal_protocol_overrides_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert telemetry._otlp_protocol("TRACES") == "grpc"
    assert telemetry._otlp_protocol("METRICS") == "http/protobuf"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    assert telemetry._otlp_protocol("TRACES") == "grpc"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_prometheus_exporter_serves_the_services_metrics() -> None:
    # A process of its own: the SDK's providers are installed once per process.
    port = _free_port()
    script = textwrap.dedent(
        f"""
        import urllib.request
        from services.common.telemetry import meter, setup_telemetry
        setup_telemetry("probe")
        meter().create_counter("reckon.events.relayed", unit="{{event}}").add(7)
        url = "http://127.0.0.1:{port}/metrics"
        print(urllib.request.urlopen(url, timeout=5).read().decode())
        """
    )
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("reckon_events")]
    assert any(line.split()[-1] in {"7", "7.0"} for line in lines), result.stdout[-2000:]
