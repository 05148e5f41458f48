"""The pipelined round trip charging's scripts ride on (adapters/resp.py), on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from services.charging.adapters.resp import (
    RedisPyExchange,
    RespConnection,
    exchange_for,
    resp,
)
from suite.redis_server import EmbeddedRedis, free_port


@pytest.fixture
async def connection(redis_server: EmbeddedRedis) -> AsyncIterator[RespConnection]:
    c = exchange_for(aioredis.Redis.from_url(redis_server.url))
    assert isinstance(c, RespConnection)
    yield c
    await c.close()


def batch(*commands: tuple[str, ...]) -> tuple[bytes, int]:
    return b"".join(resp(*command) for command in commands), len(commands)


async def test_replies_come_back_in_order_with_errors_in_their_place(
    connection: RespConnection, redis_client: aioredis.Redis
) -> None:
    replies = await connection.exchange(
        *batch(
            ("SET", "k", "v"),
            ("EVALSHA", "0" * 40, "0"),
            ("INCR", "k"),
            ("GET", "k"),
            ("RPUSH", "l", "a", "b"),
            ("LRANGE", "l", "0", "-1"),
            ("GET", "missing"),
        )
    )
    assert replies[0] == b"OK"
    assert isinstance(replies[1], NoScriptError)
    assert isinstance(replies[2], ResponseError)
    assert "not an integer" in str(replies[2])
    assert replies[3:] == [b"v", 2, [b"a", b"b"], None]


async def test_a_large_batch_is_read_across_many_socket_reads(
    connection: RespConnection, redis_client: aioredis.Redis
) -> None:
    value = "x" * 10_000
    commands: list[tuple[str, ...]] = [("SET", f"big:{i}", value) for i in range(500)]
    commands += [("GET", f"big:{i}") for i in range(500)]
    replies = await connection.exchange(*batch(*commands))
    assert replies[:500] == [b"OK"] * 500
    assert replies[500:] == [value.encode()] * 500


async def test_it_logs_in_as_a_user_and_selects_the_database(
    redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    await redis_client.acl_setuser(
        "ledger", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    try:
        client = aioredis.Redis(
            host="127.0.0.1", port=redis_server.port, db=3, username="ledger", password="s3cret"
        )
        c = exchange_for(client)
        assert await c.exchange(*batch(("SET", "in-three", "1"))) == [b"OK"]
        await c.close()
        assert (
            await aioredis.Redis(host="127.0.0.1", port=redis_server.port, db=3).get("in-three")
            == b"1"
        )
        assert await redis_client.get("in-three") is None  # not database 0
        wrong = RespConnection(port=redis_server.port, username="ledger", password="nope")
        with pytest.raises(RedisConnectionError, match="refused the connection setup"):
            await wrong.exchange(*batch(("PING",)))
    finally:
        await redis_client.acl_deluser("ledger")


async def test_nothing_listening_is_a_connection_error() -> None:
    c = RespConnection(port=free_port())
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await c.exchange(*batch(("PING",)))


async def test_a_killed_connection_fails_its_batch_and_the_next_one_reconnects(
    connection: RespConnection, redis_client: aioredis.Redis
) -> None:
    assert await connection.exchange(*batch(("CLIENT", "SETNAME", "doomed"))) == [b"OK"]
    await redis_client.client_kill_filter(_type="normal", skipme=True)
    await asyncio.sleep(0.05)
    with pytest.raises(RedisConnectionError):
        await connection.exchange(*batch(("PING",)))
    assert await connection.exchange(*batch(("PING",))) == [b"PONG"]


def test_tls_goes_through_redis_py() -> None:
    client = aioredis.Redis.from_url("rediss://127.0.0.1:1/0")
    assert isinstance(exchange_for(client), RedisPyExchange)
