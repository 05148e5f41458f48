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

import functools
import hashlib
import inspect
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.charging.adapters.script_pipeline import (
    BalanceStoreUnavailable,
    Script,
    ScriptPipeline,
    unavailable,
)
from services.charging.service_layer.ports import (
    AccountView,
    BucketView,
    JournalEntry,
    ScriptResult,
    Snapshot,
    SweepResult,
)
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
                raise unavailable(exc) from exc

        return mapped

    def generator(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        @functools.wraps(method)
        async def mapped(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(*args, **kwargs):
                    yield item
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise unavailable(exc) from exc

        return mapped

    for name, value in list(vars(cls).items()):
        if name.startswith("_") or name in _AT_START or not callable(value):
            continue
        if inspect.iscoroutinefunction(value):
            setattr(cls, name, coroutine(value))
        elif inspect.isasyncgenfunction(value):
            setattr(cls, name, generator(value))
    return cls


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


__all__ = [
    "BalanceStoreUnavailable",
    "RedisBalanceStore",
    "RedisClient",
    "Script",
    "UnsafeBalanceStore",
    "prefix",
]
