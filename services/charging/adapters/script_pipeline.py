"""Script calls coalesced into pipelines (``ScriptPipeline``) and the one mapping of a lost
Redis to UNAVAILABLE (``unavailable``, ADR 0015 and ADR 0034)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.charging.adapters.resp import Exchange, exchange_for, resp
from services.common.errors import Unavailable
from services.common.telemetry import meter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


class BalanceStoreUnavailable(Unavailable):
    default_reason = "BALANCE_STORE_UNAVAILABLE"


# Pipelines that may go out on top of ``max_in_flight`` while a deep queue waits.
_BURST: Final = 2
# How long a fire-and-forget command waits for a pipeline of scripts to ride along with.
_DEFERRED_S: Final = 0.05
_Pending = tuple[Script | None, Sequence[str], Sequence[str | bytes], "asyncio.Future[Any] | None"]


def unavailable(exc: Exception) -> Exception:
    """Redis restarting (refused, reset, LOADING its data) is no fault of the request:
    UNAVAILABLE tells the caller to retry with the same request number, which the
    stored answer makes safe even if the script ran. Other errors pass unchanged.

    The one mapping of a lost Redis: the script pipeline applies it to every reply, and
    ``redis_store._redis_loss_is_unavailable`` to every public method of the store (ADR 0034)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return BalanceStoreUnavailable(f"balance store unreachable ({exc}); retry")
    return exc


class ScriptPipeline:
    """Runs EVALSHA calls (and fire-and-forget commands), coalesced into pipelines.

    At most ``max_in_flight`` pipelines are outstanding; calls made meanwhile wait
    for the next one. Under load batches grow by themselves: one round trip and one
    parse for many requests (redis-py costs ~110 us of CPU per lone command, under
    20 us per command in a batch of 32), at the price of waiting for at most one
    round trip. Commands queued with ``send`` (journal acks) ride along.

    One pipeline in flight by default: gRPC hands the servicer its requests a few
    per event-loop turn, so with two in flight batches stayed at ~3 scripts (and
    the ledger's group commits at ~3 requests) under a 32-call load; with one they
    grow to ~10, which cut the server's CPU per request by ~20%. Redis runs scripts
    one at a time anyway, so the second pipeline only overlapped the network hop.

    A batch waits ``wait_turns`` turns of the event loop before it goes: behind
    gRPC, calls arrive about one per turn (the server accepts one RPC at a time),
    so sending at the first turn made batches of ~1.3 under a 32-call unary load;
    letting the callbacks already due run first lets the calls that have arrived
    join (ADR 0019). A turn with nothing else to do costs microseconds; a queue
    already ``burst_at`` deep does not wait.

    A deep queue is different: when ``burst_at`` calls or more wait (a stream
    gateway's load), up to two more pipelines go out while the first is in flight,
    so the server prepares and answers batches while Redis runs another (ADR 0019).
    """

    def __init__(
        self,
        client: Any,
        *,
        max_batch: int = 512,
        max_in_flight: int = 1,
        burst_at: int = 64,
        wait_turns: int = 0,
    ) -> None:
        self._client = client
        self._wait_turns = wait_turns
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._burst_at = burst_at
        self._pending: list[_Pending] = []
        self._deferred: list[_Pending] = []
        self._timer_set = False
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # One held connection per pipeline in flight (standalone Redis).
        self._connections: asyncio.Queue[Exchange] = asyncio.Queue()
        if not isinstance(client, RedisCluster):
            for _ in range(max_in_flight + _BURST):
                self._connections.put_nowait(exchange_for(client))
        # reckon.charging.script.duration: the round trip of the pipeline that carried a
        # script (Redis runs a batch's scripts one after the other, so that is what the
        # caller waited for), one point per script name per batch, not per call: a batch
        # of 30 Updates costs one record, and the attribute sets are built once (ADR 0052).
        self._script_duration = meter().create_histogram(
            "reckon.charging.script.duration",
            unit="ms",
            description="Round trip of the Redis pipeline that ran a script, by script",
        )
        self._script_attributes: dict[str, dict[str, str]] = {}

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, keys, args, future))
        self._schedule()
        return await future

    async def aclose(self, wait_s: float = 5.0) -> None:
        """Send what is queued, wait for pipelines in flight, disconnect held connections."""
        self._flush_deferred()
        deadline = asyncio.get_running_loop().time() + wait_s
        while (self._pending or self._tasks) and asyncio.get_running_loop().time() < deadline:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=wait_s)
            else:
                await asyncio.sleep(0.001)
        while not self._connections.empty():
            await self._connections.get_nowait().close()

    async def command(self, *command: str) -> Any:
        """Run a plain command in the next pipeline and return its reply."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((None, command, (), future))
        self._schedule()
        return await future

    def send(self, *command: str) -> None:
        """Queue a command nobody waits for (errors are logged). It rides along with
        the next pipeline of scripts, or goes on its own after ``_DEFERRED_S``."""
        self._deferred.append((None, command, (), None))
        if not self._timer_set:
            self._timer_set = True
            asyncio.get_running_loop().call_later(_DEFERRED_S, self._flush_deferred)

    def _flush_deferred(self) -> None:
        self._timer_set = False
        if self._deferred:
            self._pending.extend(self._deferred)
            self._deferred.clear()
            self._schedule()

    def _schedule(self) -> None:
        if not self._pending or self._scheduled:
            return
        limit = self._max_in_flight + _BURST * (len(self._pending) >= self._burst_at)
        if self._in_flight < limit:
            # The task takes its batch when it first runs (next turn of the loop), so
            # every call made in this turn rides in it: no separate flush callback.
            self._scheduled = True
            self._in_flight += 1
            task = asyncio.ensure_future(self._send_pending())
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    async def _send_pending(self) -> None:
        for _ in range(self._wait_turns):
            if len(self._pending) >= self._burst_at:
                break  # a deep queue (stream load) needs no help to fill a batch
            await asyncio.sleep(0)  # calls arriving in these turns ride along
        self._scheduled = False
        if self._deferred:
            self._pending.extend(self._deferred)
            self._deferred.clear()
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        self._schedule()  # more than one batch waiting, and room for another in flight
        if batch:
            await self._send(batch)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight -= 1
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()
        self._schedule()

    async def _send(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results = await self._exchange(batch)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            exc = unavailable(exc)
            for *_, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        self._record(batch, (time.perf_counter() - started) * 1000.0)
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if future is None:
                if isinstance(result, Exception):
                    log.warning("%s failed: %s", keys[0] if keys else "command", result)
                continue
            if future.done():
                continue
            if script is not None and (
                isinstance(result, NoScriptError)
                or (isinstance(result, ResponseError) and "NOSCRIPT" in str(result))
            ):
                try:
                    result = await self._evalsha(script, keys, args)
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(unavailable(exc))
                    continue
            if isinstance(result, Exception):
                future.set_exception(unavailable(result))  # LOADING: retry, not a fault
            else:
                future.set_result(result)

    def _record(self, batch: list[_Pending], elapsed_ms: float) -> None:
        names = {script.name for script, *_ in batch if script is not None}
        for name in names:
            attributes = self._script_attributes.get(name)
            if attributes is None:
                attributes = self._script_attributes[name] = {"script": name}
            self._script_duration.record(elapsed_ms, attributes)

    async def _exchange(self, batch: list[_Pending]) -> list[Any]:
        """Send a batch and read its replies (errors come back as exception objects)."""
        if isinstance(self._client, RedisCluster):
            pipe = self._client.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                if script is None:
                    pipe.execute_command(*keys)
                else:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))
        # Standalone Redis: RESP written directly on a held connection (adapters/resp.py).
        # redis-py's pipeline spends more CPU packing and checking out connections than
        # Redis spends running the scripts.
        connection = await self._connections.get()
        try:
            packed = b"".join(
                resp(*keys)
                if script is None
                else resp("EVALSHA", script.sha, str(len(keys)), *keys, *args)
                for script, keys, args, _ in batch
            )
            return await connection.exchange(packed, len(batch))
        finally:
            self._connections.put_nowait(connection)

    async def _evalsha(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes]
    ) -> Any:
        try:
            return await self._client.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
        except NoScriptError:
            await self._client.script_load(script.source)
            return await self._client.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
