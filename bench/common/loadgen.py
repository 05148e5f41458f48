"""Load generators for gRPC benchmarks: closed loop, open loop (paced) and pipelined streams.

Each runner takes a zero-argument coroutine factory (or a stream opener), so any
RPC can be measured the same way: the echo baseline and, later, charging calls
in the same run. Every runner is bounded in time and in count and stops by itself.

Timings are integer nanoseconds from ``time.perf_counter_ns``; percentiles use
the nearest-rank method on the sorted samples (no interpolation), so a reported
p99 is a latency that some request really had.

* ``closed_loop``: ``concurrency`` workers each send the next call as soon as the
  previous one answers. Its throughput is the peak the server sustains at that
  many calls in flight; its latencies are those *at* the peak (mostly queueing).
* ``open_loop``: calls start on a fixed schedule (``rate`` per second) whatever
  the server does; a call's latency is measured from the moment it was *due*,
  not from when the client got round to sending it, so a stalled server cannot
  hide its stall (no coordinated omission).
* ``stream_pipelined``: ``streams`` bidirectional streams, each with up to
  ``window`` messages written but not yet answered.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

NS_PER_S = 1_000_000_000

# Percentiles every summary reports.
REPORTED = (Fraction(50), Fraction(95), Fraction(99))


def percentile(sorted_ns: Sequence[int], p: Fraction | int) -> int:
    """Nearest-rank percentile ``p`` (0 < p <= 100) of samples sorted ascending."""
    if not sorted_ns:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(Fraction(p) * len(sorted_ns) / 100)
    return sorted_ns[max(rank, 1) - 1]


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles of one run, in nanoseconds."""

    count: int
    p50_ns: int
    p95_ns: int
    p99_ns: int
    max_ns: int

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> LatencySummary | None:
        if not samples_ns:
            return None
        ordered = sorted(samples_ns)
        p50, p95, p99 = (percentile(ordered, p) for p in REPORTED)
        return cls(len(ordered), p50, p95, p99, ordered[-1])


@dataclass
class RunResult:
    """What one load run achieved."""

    kind: str  # "closed", "open" or "stream"
    ok: int = 0
    errors: int = 0
    elapsed_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    first_error: str | None = None
    # open loop only: the rate asked for, and calls that could not start because
    # ``max_in_flight`` calls were already outstanding (the server fell behind).
    target_rate: float | None = None
    shed: int = 0

    @property
    def rate(self) -> float:
        """Successful calls (or stream messages) per second."""
        return self.ok * NS_PER_S / self.elapsed_ns if self.elapsed_ns else 0.0

    @property
    def latency(self) -> LatencySummary | None:
        return LatencySummary.of(self.latencies_ns)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


Call = Callable[[], Awaitable[Any]]


async def closed_loop(
    call: Call, *, concurrency: int, duration_s: float, max_calls: int = 1_000_000
) -> RunResult:
    """``concurrency`` workers call back to back for ``duration_s`` (or ``max_calls`` calls)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    result = RunResult("closed")
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * NS_PER_S)
    budget = max_calls

    async def worker() -> None:
        nonlocal budget
        clock = time.perf_counter_ns
        samples = result.latencies_ns
        while budget > 0:
            began = clock()
            if began >= deadline:
                return
            budget -= 1
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
                result._failed(exc)
                continue
            samples.append(clock() - began)
            result.ok += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_ns = time.perf_counter_ns() - start
    return result


async def open_loop(
    call: Call, *, rate: float, duration_s: float, max_in_flight: int = 512
) -> RunResult:
    """Start calls on a fixed schedule of ``rate``/s for ``duration_s``; wait for all answers."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    result = RunResult("open", target_rate=rate)
    total = max(1, int(rate * duration_s))
    interval_ns = NS_PER_S / rate
    due: asyncio.Queue[int | None] = asyncio.Queue()
    in_flight = 0

    async def worker() -> None:
        nonlocal in_flight
        clock = time.perf_counter_ns
        samples = result.latencies_ns
        while (scheduled := await due.get()) is not None:
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
                result._failed(exc)
            else:
                samples.append(clock() - scheduled)
                result.ok += 1
            finally:
                in_flight -= 1

    workers = [asyncio.create_task(worker()) for _ in range(max_in_flight)]
    start = time.perf_counter_ns()
    issued = 0
    try:
        while issued < total:
            now = time.perf_counter_ns()
            # Start everything that is due: the event loop wakes about once a millisecond,
            # so at high rates a few calls start per wake-up, each timed from its own due time.
            while issued < total and (scheduled := start + int(issued * interval_ns)) <= now:
                issued += 1
                if in_flight >= max_in_flight:
                    result.shed += 1
                    continue
                in_flight += 1
                due.put_nowait(scheduled)
            if issued < total:
                next_due = start + int(issued * interval_ns)
                await asyncio.sleep(max(0, next_due - time.perf_counter_ns()) / NS_PER_S)
    finally:
        for _ in workers:
            due.put_nowait(None)
        await asyncio.gather(*workers)
    result.elapsed_ns = time.perf_counter_ns() - start
    return result


class BidiCall(Protocol):
    """The part of ``grpc.aio.StreamStreamCall`` a pipelined stream needs."""

    async def write(self, request: Any) -> None: ...
    async def read(self) -> Any: ...
    async def done_writing(self) -> None: ...
    def cancel(self) -> bool: ...


async def stream_pipelined(
    open_stream: Callable[[], BidiCall],
    make_request: Callable[[], Any],
    *,
    streams: int,
    window: int,
    duration_s: float,
    eof: Any,
    max_messages: int = 5_000_000,
) -> RunResult:
    """Keep ``window`` messages in flight on each of ``streams`` streams for ``duration_s``.

    Answers must come back in order (as an echo's do); a message's latency is from
    its write to its answer. ``eof`` is the sentinel ``read()`` returns at the end
    (``grpc.aio.EOF``).
    """
    if streams < 1 or window < 1:
        raise ValueError("streams and window must be at least 1")
    result = RunResult("stream")
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * NS_PER_S)
    budget = max_messages

    async def one_stream() -> None:
        nonlocal budget
        call = open_stream()
        credit = asyncio.Semaphore(window)
        sent_at: deque[int] = deque()
        clock = time.perf_counter_ns
        samples = result.latencies_ns

        async def writer() -> None:
            nonlocal budget
            while budget > 0 and clock() < deadline:
                await credit.acquire()
                budget -= 1
                sent_at.append(clock())
                await call.write(make_request())
            await call.done_writing()

        async def reader() -> None:
            while (response := await call.read()) is not eof:
                del response
                samples.append(clock() - sent_at.popleft())
                result.ok += 1
                credit.release()

        try:
            await asyncio.gather(writer(), reader())
        except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
            call.cancel()
            result._failed(exc)

    await asyncio.gather(*(one_stream() for _ in range(streams)))
    result.elapsed_ns = time.perf_counter_ns() - start
    return result
