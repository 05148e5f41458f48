"""Render one trace as a Rich tree: who called whom, in which service, for how long."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from suite.trace_receiver import ReceivedSpan

_KIND_MARK = {
    "server": "⇢",
    "client": "⇠",
    "producer": "↑",
    "consumer": "↓",
    "internal": "·",
}
_SERVICE_PREFIX = "reckon-"
_DETAIL_WIDTH = 90
_HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"


def _detail(span: ReceivedSpan) -> str:
    """One attribute worth seeing next to the span name, if any."""
    statement = span.attributes.get("db.statement") or span.attributes.get("db.query.text")
    if isinstance(statement, str):
        flat = " ".join(statement.split())
        return flat if len(flat) <= _DETAIL_WIDTH else flat[: _DETAIL_WIDTH - 1] + "…"
    status = span.attributes.get("rpc.grpc.status_code")
    if span.kind in {"server", "client"} and isinstance(status, int) and status != 0:
        return f"grpc status {status}"
    return ""


def _short_name(span: ReceivedSpan) -> str:
    # SQL spans are named "INSERT /path/to/service.db"; the statement beside says more.
    if "db.statement" in span.attributes or "db.query.text" in span.attributes:
        return span.name.split(" ", 1)[0]
    return span.name


def span_label(span: ReceivedSpan) -> Text:
    service = span.service.removeprefix(_SERVICE_PREFIX)
    label = Text.from_markup(
        f"{_KIND_MARK.get(span.kind, '·')} [cyan]{escape(service)}[/] "
        f"[bold]{escape(_short_name(span))}[/] [green]{span.duration_ms:.1f} ms[/]"
    )
    detail = _detail(span)
    if detail:
        label.append(f"  {detail}", style="dim")
    if span.status_code == "error":
        label.append(f"  ✗ {span.status_message or 'error'}", style="bold red")
    return label


def roots_and_children(
    spans: Iterable[ReceivedSpan],
) -> tuple[list[ReceivedSpan], dict[str, list[ReceivedSpan]]]:
    """Top-level spans and each span's children, all ordered by start time.

    A span whose parent never arrived (dropped, or still in a batch) is shown at
    the top level rather than hidden.
    """
    ordered = sorted(spans, key=lambda span: (span.start_unix_nano, span.span_id))
    known = {span.span_id for span in ordered}
    children: dict[str, list[ReceivedSpan]] = defaultdict(list)
    roots: list[ReceivedSpan] = []
    for span in ordered:
        if span.parent_span_id and span.parent_span_id in known:
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    return roots, children


def trace_tree(trace_id: str, spans: Iterable[ReceivedSpan]) -> Tree:
    """The trace as a tree headed by its id, span count, services and duration."""
    spans = list(spans)
    roots, children = roots_and_children(spans)
    services = sorted({span.service.removeprefix(_SERVICE_PREFIX) for span in spans})
    if spans:
        start = min(span.start_unix_nano for span in spans)
        end = max(span.end_unix_nano for span in spans)
        heading = (
            f"[bold]trace {trace_id}[/]  {len(spans)} spans, "
            f"{len(services)} service(s): {', '.join(services)}; {(end - start) / 1e6:.1f} ms"
        )
    else:
        heading = f"[bold]trace {trace_id}[/]  no spans"
    tree = Tree(heading)

    def grow(branch: Tree, span: ReceivedSpan) -> None:
        node = branch.add(span_label(span))
        for child in children.get(span.span_id, []):
            grow(node, child)

    for root in roots:
        grow(tree, root)
    return tree


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root_name: str
    root_service: str
    root_kind: str
    span_count: int
    start_unix_nano: int
    duration_ms: float

    @property
    def background(self) -> bool:
        """A lone span no one asked for: an outbox or consumer poll, a health probe."""
        return self.span_count == 1 and (
            self.root_kind == "client" or self.root_name.startswith(_HEALTH_METHOD_PREFIX)
        )


def summarise_traces(spans: Iterable[ReceivedSpan]) -> list[TraceSummary]:
    """One line per trace, most recent first, named after its earliest top-level span."""
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    summaries = []
    for trace_id, members in by_trace.items():
        roots, _ = roots_and_children(members)
        root = roots[0]
        start = min(span.start_unix_nano for span in members)
        end = max(span.end_unix_nano for span in members)
        summaries.append(
            TraceSummary(
                trace_id=trace_id,
                root_name=root.name,
                root_service=root.service.removeprefix(_SERVICE_PREFIX),
                root_kind=root.kind,
                span_count=len(members),
                start_unix_nano=start,
                duration_ms=(end - start) / 1e6,
            )
        )
    summaries.sort(key=lambda summary: summary.start_unix_nano, reverse=True)
    return summaries
