"""Pipelined round trips to one Redis: a batch of commands written at once, its replies read.

``ScriptPipeline`` holds one of these per pipeline in flight. ``RespConnection`` is the
fast one, for a standalone Redis over TCP or a Unix socket: the batch is written as RESP
bytes and the replies are parsed by hiredis from as few socket reads as they take, with
no per-reply coroutine, timeout context or connection check (redis-py spends more CPU on
those, per reply, than Redis spends running a credit-control script; ADR 0019).
``RedisPyExchange`` does the same through a redis-py connection, for what
``RespConnection`` does not speak (TLS).

Errors keep redis-py's classes, so callers see one vocabulary: a reply that is an error
comes back as an exception object in its place (``NoScriptError``, ``BusyLoadingError``
while Redis loads its data, else ``ResponseError``); a connection that fails raises
``redis.exceptions.ConnectionError`` and is reopened by the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

_READ_BYTES = 65_536


class Exchange(Protocol):
    async def exchange(self, packed: bytes, count: int) -> list[Any]:
        """Send ``packed`` (``count`` commands) and return their ``count`` replies."""
        ...

    async def close(self) -> None: ...


def resp(*parts: str | bytes) -> bytes:
    """One command in the Redis protocol (RESP2 array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _error_of(reply: hiredis.ReplyError) -> Exception:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return ResponseError(message)


class RespConnection:
    """One connection to a standalone Redis (TCP or Unix socket), opened on first use."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        encoding: str | None = None,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = None,
    ) -> None:
        self._host, self._port, self._path = host, port, path
        self._username, self._password, self._db = username, password, db
        self._encoding = encoding
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    reader, writer = await asyncio.open_unix_connection(self._path)
                else:
                    reader, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        self._reader, self._writer = reader, writer
        self._parser = (
            hiredis.Reader(encoding=self._encoding) if self._encoding else hiredis.Reader()
        )
        hello: list[bytes] = []
        if self._password is not None:
            credentials = [self._username] if self._username else []
            hello.append(resp("AUTH", *credentials, self._password))
        if self._db:
            hello.append(resp("SELECT", str(self._db)))
        if hello:
            for reply in await self._round_trip(b"".join(hello), len(hello)):
                if isinstance(reply, Exception):
                    await self.close()
                    raise RedisConnectionError(f"Redis refused the connection setup: {reply}")
        return reader, writer

    async def exchange(self, packed: bytes, count: int) -> list[Any]:
        if self._writer is None:
            await self._open()
        try:
            if self._read_timeout is None:
                return await self._round_trip(packed, count)
            async with asyncio.timeout(self._read_timeout):
                return await self._round_trip(packed, count)
        except BaseException as exc:
            # A half-read connection must not carry the next batch: its replies would
            # answer the wrong commands.
            await self.close()
            if isinstance(exc, OSError | TimeoutError):
                raise RedisConnectionError(f"Redis connection failed: {exc!r}") from exc
            raise

    async def _round_trip(self, packed: bytes, count: int) -> list[Any]:
        reader, writer, parser = self._reader, self._writer, self._parser
        assert reader is not None
        assert writer is not None
        writer.write(packed)
        await writer.drain()
        replies: list[Any] = []
        while len(replies) < count:
            reply = parser.gets()
            if reply is False:
                data = await reader.read(_READ_BYTES)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                parser.feed(data)
                continue
            replies.append(_error_of(reply) if isinstance(reply, hiredis.ReplyError) else reply)
        return replies

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, RuntimeError):  # already gone: nothing to flush
                await writer.wait_closed()


class RedisPyExchange:
    """The same round trip through a redis-py connection (TLS and whatever else it speaks)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def exchange(self, packed: bytes, count: int) -> list[Any]:
        connection = self._connection
        try:
            await connection.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            await connection.disconnect()  # a half-read connection must not be reused
            raise

    async def close(self) -> None:
        await self._connection.disconnect()


def exchange_for(client: aioredis.Redis) -> Exchange:
    """A round-tripper to the standalone Redis ``client`` talks to, with its settings."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    common: dict[str, Any] = {
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "db": int(kwargs.get("db") or 0),
        "encoding": kwargs.get("encoding") if kwargs.get("decode_responses") else None,
        "connect_timeout": kwargs.get("socket_connect_timeout") or 5.0,
        "read_timeout": kwargs.get("socket_timeout"),
    }
    if pool.connection_class is Connection:
        return RespConnection(
            host=kwargs.get("host", "127.0.0.1"), port=int(kwargs.get("port", 6379)), **common
        )
    if pool.connection_class is UnixDomainSocketConnection:
        return RespConnection(path=kwargs["path"], **common)
    return RedisPyExchange(pool.make_connection())  # type: ignore[no-untyped-call]
