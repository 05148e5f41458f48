"""A test-clock move carries its mover's trace context (ADR 0054), on a real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.common.clock import TEST_CLOCK_KEY, SharedTestClock


@pytest.fixture
def clock_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_server.url)
    client.delete(TEST_CLOCK_KEY, f"{TEST_CLOCK_KEY}:moved-by")
    client.close()
    return str(redis_server.url)


def test_a_traced_move_is_continued_by_the_readers_and_an_untraced_one_clears_it(
    clock_url: str,
) -> None:
    tracer = TracerProvider().get_tracer("test")
    mover, reader = SharedTestClock(clock_url), SharedTestClock(clock_url)
    try:
        with tracer.start_as_current_span("the mover") as span:
            mover.advance(timedelta(days=31))
            mover_trace = span.get_span_context().trace_id
            mover_span = span.get_span_context().span_id
        reader.refresh()
        context = reader.move_context()
        assert context is not None
        parent = trace.get_current_span(context).get_span_context()
        assert (parent.trace_id, parent.span_id) == (mover_trace, mover_span)

        # A move by someone untraced (a shell's `reckon clock advance`): no parent.
        mover.advance(timedelta(days=1))
        reader.refresh()
        assert reader.move_context() is None

        # A reader that has not seen the latest move yet does not take its context.
        with tracer.start_as_current_span("another mover"):
            mover.advance(timedelta(hours=1))
        assert reader.move_context() is None
        reader.refresh()
        assert reader.move_context() is not None
    finally:
        mover.close()
        reader.close()
