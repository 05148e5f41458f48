"""The live balance store: Redis (standalone or Cluster) changed only by Lua scripts.

Key layout (every key of an account shares its hash tag, so the scripts run on
Redis Cluster unchanged; see ``lua/_lib.lua`` for the amounts' scale)::

    ch:{acct:<id>}:a              account hash: mode, currency, credit limit, thresholds,
                                  final-unit action, state, epoch, journal seq, due
    ch:{acct:<id>}:bm             bucket id -> metadata JSON (unit, priority, validity, scope)
    ch:{acct:<id>}:bv             <bucket>:a / <bucket>:r -> available / reserved
    ch:{acct:<id>}:s:<session>    session: state, last request number and answer,
                                  g:<rating group> -> reservation JSON
    ch:{acct:<id>}:x              zset session -> sweep-at ms (open reservations only)
    ch:{acct:<id>}:j              journal: entry id -> JSON, until committed to SQL
    ch:{acct:<id>}:q:<scope>:<id> idempotent answers of admin calls and offline usage
    ch:{acct:<id>}:rb             rebuild marker (Redis time the loss was noticed)
    ch:{sweep:<n>}:due / :ver     the sweeper's index, sharded over n hash tags

Scripts are packaged ``.lua`` files; the account scripts are loaded with the
shared prelude ``_lib.lua`` in front, registered once by SHA and called with
EVALSHA (reloaded after a Redis restart or ``SCRIPT FLUSH``). Calls made in the
same event-loop turn are sent in one pipeline (``ScriptPipeline``): the streaming
RPC and concurrent unary calls share round trips, which is most of the cost.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.charging.adapters.resp import Exchange, exchange_for, resp
from services.charging.service_layer.ports import (
    AccountView,
    BucketView,
    JournalEntry,
    ScriptResult,
    Snapshot,
    SweepResult,
)
from services.common.errors import Unavailable
from services.common.json_codec import dumps_bytes

log = logging.getLogger(__name__)

LUA_PACKAGE: Final = "services.charging.adapters.lua"
_ACCOUNT_SCRIPTS: Final = (
    "credit_control",
    "event",
    "credit",
    "account",
    "sweep",
    "restore",
    "restore_sessions",
    "release",
)
_INDEX_SCRIPTS: Final = ("touch", "claim", "settle")
_ACCOUNT_KEY: Final = re.compile(r"^ch:\{acct:(.+)\}:[xj]$")

RedisClient = aioredis.Redis | RedisCluster


def prefix(account_id: str) -> str:
    return f"ch:{{acct:{account_id}}}:"


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def held_by_sessions(sessions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each open session held after its last answered request (restore.lua holds it again).

    credit_control.lua writes the holds into the answer SQL keeps (``h``, swept at ``sw``);
    an answer from before that field existed, or one that holds nothing, has none.
    """
    holds = []
    for session in sessions:
        if session["st"] != "O":
            continue
        try:
            answer = orjson.loads(session["ans"])
        except orjson.JSONDecodeError:
            continue
        if isinstance(answer, dict) and answer.get("h") and answer.get("sw"):
            holds.append(
                {"sid": session["sid"], "rn": session["rn"], "sw": answer["sw"], "h": answer["h"]}
            )
    return holds


def load_scripts() -> dict[str, Script]:
    folder = resources.files(LUA_PACKAGE)
    prelude = folder.joinpath("_lib.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in (*_ACCOUNT_SCRIPTS, *_INDEX_SCRIPTS):
        body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        source = f"{prelude}\n{body}" if name in _ACCOUNT_SCRIPTS else body
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts


# Pipelines that may go out on top of ``max_in_flight`` while a deep queue waits.
_BURST: Final = 2
# How long a fire-and-forget command waits for a pipeline of scripts to ride along with.
_DEFERRED_S: Final = 0.05
_Pending = tuple[Script | None, Sequence[str], Sequence[str | bytes], "asyncio.Future[Any] | None"]


def _unavailable(exc: Exception) -> Exception:
    """Redis restarting (refused, reset, LOADING its data) is no fault of the request:
    UNAVAILABLE tells the caller to retry with the same request number, which the
    stored answer makes safe even if the script ran. Other errors pass unchanged.

    The one mapping of a lost Redis: the script pipeline applies it to every reply, and
    ``_redis_loss_is_unavailable`` to every public method of the store (ADR 0034)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return BalanceStoreUnavailable(f"balance store unreachable ({exc}); retry")
    return exc


_C = TypeVar("_C", bound=type)
# Called by the process as it starts or stops, never for a request: a Redis missing at start
# is reported as what it is (``entrypoints/main.py`` names the dependency).
_AT_START: Final = frozenset({"load", "check_eviction", "aclose"})


def _redis_loss_is_unavailable(cls: _C) -> _C:
    """Wrap every public coroutine (and async generator) method of a store class so that a
    lost Redis leaves it as ``BalanceStoreUnavailable``, whichever read or write path
    (script, pipeline of plain reads, TIME, SCAN) met it: no RPC answers INTERNAL for it."""

    def coroutine(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def mapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _unavailable(exc) from exc

        return mapped

    def generator(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        @functools.wraps(method)
        async def mapped(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(*args, **kwargs):
                    yield item
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _unavailable(exc) from exc

        return mapped

    for name, value in list(vars(cls).items()):
        if name.startswith("_") or name in _AT_START or not callable(value):
            continue
        if inspect.iscoroutinefunction(value):
            setattr(cls, name, coroutine(value))
        elif inspect.isasyncgenfunction(value):
            setattr(cls, name, generator(value))
    return cls


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
        client: RedisClient,
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
        try:
            results = await self._exchange(batch)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            exc = _unavailable(exc)
            for *_, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
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
                    future.set_exception(_unavailable(exc))
                    continue
            if isinstance(result, Exception):
                future.set_exception(_unavailable(result))  # LOADING: retry, not a fault
            else:
                future.set_result(result)

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _result(account_id: str, raw: list[Any]) -> ScriptResult:
    entries = []
    for e in raw[3:]:
        record = orjson.loads(e)
        entries.append(JournalEntry(account_id, str(record["id"]), record))
    return ScriptResult(
        status=_text(raw[0]),
        answer=orjson.loads(raw[1]) if raw[1] not in (b"{}", "{}") else {},
        touch_ms=int(raw[2]),
        entries=tuple(entries),
    )


class UnsafeBalanceStore(RuntimeError):
    """The Redis given to charging could lose balances on its own (it may evict keys)."""


class BalanceStoreUnavailable(Unavailable):
    default_reason = "BALANCE_STORE_UNAVAILABLE"


@_redis_loss_is_unavailable
class RedisBalanceStore:
    """``BalanceStore`` on Redis; works with ``redis.asyncio.Redis`` and ``RedisCluster``."""

    def __init__(
        self,
        client: RedisClient,
        *,
        shards: int = 16,
        max_batch: int = 512,
        max_in_flight: int = 1,
        wait_turns: int = 0,
    ) -> None:
        self.client = client
        self.scripts = load_scripts()
        self._pipeline = ScriptPipeline(
            client, max_batch=max_batch, max_in_flight=max_in_flight, wait_turns=wait_turns
        )
        self._shards = shards

    @property
    def shards(self) -> int:
        return self._shards

    async def aclose(self) -> None:
        await self._pipeline.aclose()

    def shard_of(self, account_id: str) -> int:
        return zlib.crc32(account_id.encode()) % self._shards

    def _shard_keys(self, shard: int) -> list[str]:
        return [f"ch:{{sweep:{shard}}}:due", f"ch:{{sweep:{shard}}}:ver"]

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        return await self._pipeline.call(self.scripts[name], keys, args)

    async def check_eviction(self) -> None:
        """Refuse a Redis that may evict keys (``maxmemory`` set, policy not ``noeviction``).

        An evicted account, bucket, journal or session key is a balance or an answer lost
        without a trace: an LRU or TTL policy would drop idempotency records (they carry a
        TTL) or reservations under memory pressure. With no ``maxmemory`` nothing is
        evicted whatever the policy. Where ``CONFIG`` is not allowed (managed Redis), a
        warning says what to check.
        """
        nodes: list[Any]
        try:
            if isinstance(self.client, RedisCluster):
                replies: Any = await self.client.config_get(  # type: ignore[no-untyped-call]
                    "maxmemory*", target_nodes=RedisCluster.PRIMARIES
                )
                nodes = list(replies.values()) if isinstance(replies, dict) else [replies]
                if nodes and not isinstance(nodes[0], dict):
                    nodes = [replies]  # one node answered: its own settings
            else:
                nodes = [dict(await self.client.config_get("maxmemory*"))]
        except ResponseError as exc:
            log.warning(
                "could not read Redis's maxmemory settings (%s): charging needs "
                "maxmemory-policy noeviction, or no maxmemory",
                exc,
            )
            return
        for settings in nodes:
            config = {_text(k): _text(v) for k, v in dict(settings).items()}
            limit, policy = config.get("maxmemory", "0"), config.get("maxmemory-policy", "")
            if limit not in ("", "0") and policy != "noeviction":
                raise UnsafeBalanceStore(
                    f"Redis may evict keys (maxmemory {limit}, maxmemory-policy {policy}): "
                    "balances, reservations and stored answers would be lost under memory "
                    "pressure; set maxmemory-policy noeviction (or no maxmemory)"
                )

    async def load(self) -> None:
        """Register every script (on every primary of a cluster) before the first call."""
        for script in self.scripts.values():
            await self.client.script_load(script.source)

    # -- account scripts -----------------------------------------------------------------
    def _account_keys(self, account_id: str) -> tuple[str, str, str, str]:
        p = prefix(account_id)
        return p + "a", p + "bm", p + "bv", p

    async def credit_control(
        self, account_id: str, session_id: str, request: dict[str, Any]
    ) -> ScriptResult:
        a, bm, bv, p = self._account_keys(account_id)
        session = f"{p}s:{session_id}"
        keys = [a, bm, bv, session, p + "x", p + "j", session + ":h"]
        raw = await self._run("credit_control", keys, [dumps_bytes(request)])
        return _result(account_id, raw)

    async def event(
        self, account_id: str, record_key: str, request: dict[str, Any]
    ) -> ScriptResult:
        """``record_key``: ``s:<session>`` for EVENT requests, ``q:usage:<id>`` offline."""
        a, bm, bv, p = self._account_keys(account_id)
        keys = [a, bm, bv, p + record_key, p + "j"]
        raw = await self._run("event", keys, [dumps_bytes(request)])
        return _result(account_id, raw)

    async def credit(
        self, account_id: str, scope: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult:
        a, bm, bv, p = self._account_keys(account_id)
        keys = [a, bm, bv, f"{p}q:{scope}:{request_id}", p + "j"]
        raw = await self._run("credit", keys, [dumps_bytes(request)])
        return _result(account_id, raw)

    async def account(
        self, account_id: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult:
        a, bm, bv, p = self._account_keys(account_id)
        keys = [a, bm, bv, f"{p}q:policy:{request_id}", p + "j"]
        raw = await self._run("account", keys, [dumps_bytes(request)])
        return _result(account_id, raw)

    async def release(
        self, account_id: str, session_id: str, request_id: str, request: dict[str, Any]
    ) -> ScriptResult:
        a, bm, bv, p = self._account_keys(account_id)
        keys = [a, bm, bv, f"{p}s:{session_id}", p + "x", p + "j", f"{p}q:release:{request_id}"]
        raw = await self._run("release", keys, [dumps_bytes(request)])
        return _result(account_id, raw)

    async def sweep(self, account_id: str, request: dict[str, Any]) -> SweepResult:
        a, bm, bv, p = self._account_keys(account_id)
        keys = [a, bm, bv, p + "x", p + "j"]
        raw = await self._run("sweep", keys, [dumps_bytes({**request, "pfx": p})])
        return SweepResult(
            status=_text(raw[0]),
            next_visit_ms=int(raw[1]),
            closed_sessions=int(raw[2]),
            entries=tuple(JournalEntry.parse(account_id, e) for e in raw[3:]),
        )

    async def restore(
        self,
        account_id: str,
        snapshot: Snapshot,
        *,
        fresh: bool,
        fence_ms: int,
        snap_ms: int,
        epoch: str,
        window_s: int,
        now_ms: int,
    ) -> tuple[str, int, int]:
        a, bm, bv, p = self._account_keys(account_id)
        if snapshot.sessions:
            # Sessions first, in chunks; each chunk is refused once the account exists.
            for start in range(0, len(snapshot.sessions), 500):
                chunk = snapshot.sessions[start : start + 500]
                done = await self._run(
                    "restore_sessions",
                    [a],
                    [dumps_bytes({"pfx": p, "win": window_s, "sessions": chunk})],
                )
                if _text(done) == "EXISTS":
                    return "EXISTS", 0, 0
        request = {
            "fresh": 1 if fresh else 0,
            "fence": fence_ms,
            "snap": snap_ms,
            "pfx": p,
            "acct": {**snapshot.account, "ep": epoch},
            "buckets": snapshot.buckets,
            "now": now_ms,
            "holds": held_by_sessions(snapshot.sessions),
        }
        raw = await self._run("restore", [a, bm, bv, p + "x", p + "rb"], [dumps_bytes(request)])
        return _text(raw[0]), int(raw[1]), int(raw[2])

    async def set_state(self, account_id: str, state: str, version: int) -> str:
        a, bm, bv, p = self._account_keys(account_id)
        request = {"op": "STATE", "st": state, "stv": version, "now": 0, "acct": account_id}
        raw = await self._run(
            "account", [a, bm, bv, f"{p}q:policy:", p + "j"], [dumps_bytes(request)]
        )
        return _text(raw[0])

    async def server_time_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- the sweeper's index -----------------------------------------------------------------
    async def touch(self, account_id: str, due_ms: int) -> None:
        keys = self._shard_keys(self.shard_of(account_id))
        await self._run("touch", keys, [account_id, str(due_ms)])

    async def claim(
        self, shard: int, now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[str, str]]:
        raw = await self._run(
            "claim", self._shard_keys(shard), [str(now_ms), str(lease_ms), str(limit)]
        )
        return [(_text(raw[i]), _text(raw[i + 1])) for i in range(0, len(raw), 2)]

    async def settle(self, shard: int, account_id: str, version: str, next_ms: int) -> bool:
        raw = await self._run(
            "settle", self._shard_keys(shard), [account_id, version, str(next_ms)]
        )
        return bool(int(raw))

    def ack(self, entries: Sequence[JournalEntry]) -> None:
        """Forget committed journal entries (HDEL; a missing entry is fine).

        Sent with the next pipeline of scripts, not awaited (nor a task of its own per
        commit): a lost delete only means the reconciler commits the entry again, a no-op.
        """
        by_account: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_account[entry.account_id].append(entry.entry_id)
        for account_id, ids in by_account.items():
            self._pipeline.send("HDEL", prefix(account_id) + "j", *ids)

    # -- reads ---------------------------------------------------------------------------------
    async def read_account(self, account_id: str) -> AccountView | None:
        a, bm, bv, _ = self._account_keys(account_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(a)
        pipe.hgetall(bm)
        pipe.hgetall(bv)
        fields, metas, values = await pipe.execute()
        if not fields:
            return None
        amounts = {_text(k): int(v) for k, v in values.items()}
        buckets = tuple(
            BucketView(
                bucket_id=_text(bucket_id),
                meta=json.loads(meta),
                available=amounts.get(f"{_text(bucket_id)}:a", 0),
                reserved=amounts.get(f"{_text(bucket_id)}:r", 0),
            )
            for bucket_id, meta in metas.items()
        )
        return AccountView(account_id, {_text(k): _text(v) for k, v in fields.items()}, buckets)

    async def read_session(self, account_id: str, session_id: str) -> dict[str, str]:
        raw = await self.client.hgetall(f"{prefix(account_id)}s:{session_id}")
        return {_text(k): _text(v) for k, v in raw.items()}

    async def read_sessions(
        self, account_id: str, session_ids: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        if not session_ids:
            return {}
        p = prefix(account_id)
        pipe = self.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hgetall(f"{p}s:{session_id}")
        replies = await pipe.execute()
        return {
            session_id: {_text(k): _text(v) for k, v in raw.items()}
            for session_id, raw in zip(session_ids, replies, strict=True)
            if raw
        }

    async def session_fields(
        self, account_id: str, session_id: str, names: Sequence[str]
    ) -> dict[str, str]:
        """Some fields of a session (those it has), read in the scripts' pipeline."""
        key = f"{prefix(account_id)}s:{session_id}"
        values = await self._pipeline.command("HMGET", key, *names)
        return {
            name: _text(value)
            for name, value in zip(names, values, strict=True)
            if value is not None
        }

    async def scan_accounts_with_work(self) -> AsyncIterator[str]:
        """Accounts holding reservations or journal entries (the sweeper's backstop)."""
        seen: set[str] = set()
        async for key in self.client.scan_iter(match="ch:{acct:*}:[xj]", count=1000):
            match = _ACCOUNT_KEY.match(_text(key))
            if match and match.group(1) not in seen:
                seen.add(match.group(1))
                yield match.group(1)
