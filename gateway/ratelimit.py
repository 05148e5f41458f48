"""Rate limits per API client, per login and per address (ADR 0045, ADR 0072).

A token bucket per key: ``per_minute`` requests, refilled continuously. The buckets
live in Redis (``gateway/lua/token_bucket.lua``, one atomic script per request on
Redis's clock), so a limit holds across every gateway process of a suite, not per
process. ``GATEWAY_RATE_LIMIT_STORE=memory`` keeps them in the process instead (a
single gateway, or tests). When Redis cannot be reached the gateway keeps answering
and counts in its own memory until Redis is back: a limit per process is better than
refusing every request or counting nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.redis_kit import LuaScripts

log = logging.getLogger(__name__)
KEY_PREFIX = "reckon:gateway:rate"
# Keys carry login names and addresses anyone can invent: long ones are hashed.
MAX_KEY_CHARS = 200


class RateLimiter(Protocol):
    async def take(self, key: str) -> float:
        """0 when allowed, else the seconds until the next request would be."""
        ...


class MemoryRateLimiter:
    """Buckets in this process only."""

    # Past this many keys, buckets that have refilled completely (so hold no
    # information) are dropped.
    MAX_KEYS = 50_000

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str) -> float:
        return self.take_now(key)

    def take_now(self, key: str) -> float:
        now = time.monotonic()
        if len(self._buckets) > self.MAX_KEYS:
            self._forget_full(now)
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refill = self.capacity / self.rate
        self._buckets = {
            key: (tokens, last)
            for key, (tokens, last) in self._buckets.items()
            if now - last < refill
        }


class RedisRateLimiter:
    """Buckets in Redis, shared by every gateway using the same Redis and ``name``.

    A busy key does not cost a Redis round trip per request: the process leases
    several tokens at once (about half of what it used for that key in the last
    second, at most 1% of the capacity) and spends them locally within
    ``LEASE_SECONDS``. Tokens are taken from the shared bucket before they are
    spent, so the limit is never exceeded across processes; a lease running out
    unspent only makes the limit a little stricter. A quiet key (a login, a
    client's occasional call) takes one token per request, exactly. A refused key
    is refused locally until the bucket's next token is due (Redis said when).
    """

    LEASE_SECONDS = 1.0
    MAX_KEYS = 50_000

    def __init__(self, client: aioredis.Redis, name: str, per_minute: int) -> None:
        self._script = LuaScripts(client, "gateway.lua")["token_bucket"]
        self._prefix = f"{KEY_PREFIX}:{name}:"
        self._capacity = per_minute
        self._rate = per_minute / 60.0
        self._max_lease = max(1, per_minute // 100)
        self._fallback = MemoryRateLimiter(per_minute)
        self._warned = False
        # key -> (tokens leased and not yet spent, monotonic time the lease ends)
        self._leases: dict[str, tuple[int, float]] = {}
        # key -> (start of the current second, requests in it, requests in the one before)
        self._seen: dict[str, tuple[float, int, int]] = {}
        # key -> monotonic time before which the shared bucket has no token for it
        self._blocked: dict[str, float] = {}

    def key_of(self, key: str) -> str:
        if len(key) > MAX_KEY_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return self._prefix + key

    def _count(self, key: str, now: float) -> int:
        """Count this request; the requests of the key's previous second."""
        start, current, previous = self._seen.get(key, (now, 0, 0))
        if now - start >= 2.0:
            start, current, previous = now, 0, 0
        elif now - start >= 1.0:
            start, current, previous = start + 1.0, 0, current
        self._seen[key] = (start, current + 1, previous)
        return max(previous, current)

    async def take(self, key: str) -> float:
        now = time.monotonic()
        busy = self._count(key, now)
        left, until = self._leases.get(key, (0, 0.0))
        if left > 0 and until > now:
            self._leases[key] = (left - 1, until)
            return 0.0
        blocked = self._blocked.get(key, 0.0)
        if blocked > now:  # the shared bucket has no token before then: no need to ask
            return blocked - now
        if (
            len(self._leases) + len(self._blocked) > self.MAX_KEYS
            or len(self._seen) > self.MAX_KEYS
        ):
            self._forget(now)
        wanted = min(self._max_lease, max(1, busy // 2))
        try:
            granted, wait_ms = await self._script(
                keys=[self.key_of(key)], args=(self._capacity, self._rate, wanted)
            )
        except (RedisError, OSError) as exc:
            if not self._warned:
                log.warning("rate limits counted per process: Redis unavailable (%s)", exc)
                self._warned = True
            return self._fallback.take_now(key)
        if self._warned:
            log.info("rate limits shared through Redis again")
            self._warned = False
        if int(granted) < 1:
            self._blocked[key] = now + int(wait_ms) / 1000.0
            return int(wait_ms) / 1000.0
        if int(granted) > 1:
            self._leases[key] = (int(granted) - 1, now + self.LEASE_SECONDS)
        else:
            self._leases.pop(key, None)
        return 0.0

    def _forget(self, now: float) -> None:
        self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
        self._blocked = {k: v for k, v in self._blocked.items() if v > now}
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 2.0}
