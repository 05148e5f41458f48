"""The trace receiver's span conversion and store, and the trace tree."""

from __future__ import annotations

import threading
from pathlib import Path

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from rich.console import Console

from suite.trace_receiver import ReceivedSpan, SpanStore, read_spans, spans_from_request
from suite.trace_view import roots_and_children, summarise_traces, trace_tree

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def _kv(key: str, **value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))  # type: ignore[arg-type]


def _request() -> trace_service_pb2.ExportTraceServiceRequest:
    server = trace_pb2.Span(
        trace_id=TRACE,
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="/reckon.accounts.v1.AccountsService/CreateCustomer",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_000_000,
        end_time_unix_nano=3_500_000,
        attributes=[
            _kv("rpc.grpc.status_code", int_value=0),
            _kv("rpc.service", string_value="reckon.accounts.v1.AccountsService"),
        ],
    )
    insert = trace_pb2.Span(
        trace_id=TRACE,
        span_id=bytes.fromhex("00f067aa0ba902b8"),
        parent_span_id=server.span_id,
        name="INSERT",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_500_000,
        end_time_unix_nano=2_000_000,
        attributes=[_kv("db.statement", string_value="INSERT INTO customers (id) VALUES (?)")],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="locked"),
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[_kv("service.name", string_value="reckon-accounts")]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=[server, insert])],
            )
        ]
    )


def test_export_request_becomes_spans_labelled_with_their_service() -> None:
    server, insert = spans_from_request(_request())
    assert server.trace_id == TRACE.hex()
    assert server.parent_span_id is None
    assert server.kind == "server"
    assert server.service == "reckon-accounts"
    assert server.duration_ms == 2.5
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert insert.parent_span_id == server.span_id
    assert insert.status_code == "error"
    assert insert.status_message == "locked"


def test_store_keeps_the_latest_spans_and_mirrors_them_to_jsonl(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    store = SpanStore(max_spans=1, traces_file=traces)
    spans = spans_from_request(_request())
    store.add(spans)
    store.close()
    assert store.spans() == spans[-1:]  # bounded in memory
    assert list(read_spans(traces, TRACE.hex())) == spans  # everything on disk
    assert list(read_spans(traces, "f" * 32)) == []


def test_wait_for_returns_once_the_trace_is_complete() -> None:
    store = SpanStore()
    spans = spans_from_request(_request())
    threading.Timer(0.05, store.add, args=(spans,)).start()
    got = store.wait_for(TRACE.hex(), lambda found: len(found) == 2, timeout=5)
    assert got == spans
    assert store.wait_for(TRACE.hex(), lambda found: False, timeout=0.01) == spans


def test_jsonl_rotates_instead_of_growing_forever(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    store = SpanStore(traces_file=traces, max_file_bytes=10)
    spans = spans_from_request(_request())
    store.add(spans[:1])
    store.add(spans[1:])
    store.close()
    assert (tmp_path / "traces.1.jsonl").exists()
    assert list(read_spans(traces)) == spans[1:]  # the rotated file holds the newer batch


def _span(span_id: str, parent: str | None, start: int) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id="t",
        span_id=span_id,
        parent_span_id=parent,
        name=span_id,
        kind="internal",
        service="reckon-accounts",
        start_unix_nano=start,
        end_unix_nano=start + 10,
    )


def test_tree_orders_children_by_start_and_keeps_orphans_visible() -> None:
    spans = [
        _span("late-child", "root", 30),
        _span("root", None, 0),
        _span("early-child", "root", 10),
        _span("orphan", "missing-parent", 5),
    ]
    roots, children = roots_and_children(spans)
    assert [span.span_id for span in roots] == ["root", "orphan"]
    assert [span.span_id for span in children["root"]] == ["early-child", "late-child"]


def test_rendered_tree_shows_service_name_duration_and_errors() -> None:
    console = Console(width=200, record=True)
    console.print(trace_tree(TRACE.hex(), spans_from_request(_request())))
    text = console.export_text()
    assert f"trace {TRACE.hex()}" in text
    assert "accounts /reckon.accounts.v1.AccountsService/CreateCustomer 2.5 ms" in text
    assert "INSERT INTO customers" in text
    assert "✗ locked" in text


def test_trace_list_names_each_trace_after_its_first_top_level_span() -> None:
    older = [_span("a-root", None, 0), _span("a-child", "a-root", 5)]
    newer = [ReceivedSpan(**{**_span("b-root", None, 100).__dict__, "trace_id": "u"})]
    summaries = summarise_traces([*older, *newer])
    assert [(s.trace_id, s.root_name, s.span_count) for s in summaries] == [
        ("u", "b-root", 1),
        ("t", "a-root", 2),
    ]
    assert summaries[1].duration_ms == 15 / 1e6
    assert not summaries[0].background  # a lone internal span is someone's work


def test_a_lone_client_span_is_a_background_poll() -> None:
    poll = ReceivedSpan(**{**_span("SELECT", None, 0).__dict__, "kind": "client"})
    assert summarise_traces([poll])[0].background
