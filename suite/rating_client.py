"""Reaching the rating service from ``reckon catalog`` and ``reckon usage``.

Where the service is and which token it wants (``--addr`` / ``RATING_ADDR`` with
``RECKON_SERVICE_TOKEN``, else the running suite's ``DATA_DIR/suite.json``), one
gRPC conversation per command with failures mapped to exit codes (1 refused, 2
unreachable or misused), error printing, money formatting and chunked uploads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import grpc
import typer
from rich.console import Console
from rich.markup import escape

from services.common.grpc_client import open_channel
from services.common.grpc_errors import ErrorDetails, details_of
from suite.service_token import TOKEN_ENV
from suite.state import SuiteStateError, read_state

T = TypeVar("T")

CHUNK_BYTES: Final = 1024 * 1024
ADDRESS_ENV: Final = "RATING_ADDR"

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="RECKON_DATA_DIR",
        help="Data directory of the running suite (holds suite.json).",
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--addr",
        envvar=ADDRESS_ENV,
        help="host:port of the rating service (default: from the running suite).",
    ),
]


@dataclass(frozen=True)
class Target:
    address: str
    token: str


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def resolve_target(data_dir: Path, address: str | None) -> Target:
    """Where the rating service is and which token it wants."""
    token = os.environ.get(TOKEN_ENV, "")
    if address and token:
        return Target(address, token)
    try:
        state = read_state(data_dir)
    except SuiteStateError as exc:
        if address:
            raise _fail(f"{TOKEN_ENV} is not set and {exc}") from None
        raise _fail(
            f"{exc}; start it with `reckon up` or set {ADDRESS_ENV} and {TOKEN_ENV}"
        ) from None
    found = address or state.address_of("rating")
    if not found:
        raise _fail("the running suite has no rating service")
    try:
        return Target(found, token or state.token())
    except (SuiteStateError, OSError) as exc:
        raise _fail(str(exc)) from None


def _call(target: Target, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run one conversation with the rating service; gRPC failures end the command."""
    from reckon.rating.v1 import rating_pb2_grpc

    async def conversation() -> T:
        async with open_channel(target.address, target.token, traced=False) as channel:
            return await work(rating_pb2_grpc.RatingServiceStub(channel))

    try:
        return asyncio.run(conversation())
    except grpc.aio.AioRpcError as exc:
        details = details_of(exc)
        if details.code == grpc.StatusCode.UNAVAILABLE:
            raise _fail(
                f"rating service at {target.address} is unavailable: {details.message}"
            ) from None
        _print_error(details)
        raise typer.Exit(1) from None


def _print_error(details: ErrorDetails) -> None:
    reason = f" ({details.reason})" if details.reason else ""
    errors.print(f"[bold red]{details.code.name}{reason}:[/] {escape(details.message[:300])}")
    for violation in details.violations:
        errors.print(f"  {escape(violation.field)}: {escape(violation.description)}")


def _money(value: Any) -> str:
    if not value.currency_code:
        return "-"
    sign = "-" if value.units < 0 or value.nanos < 0 else ""
    units, nanos = abs(value.units), abs(value.nanos)
    fraction = f"{nanos:09d}".rstrip("0")
    if len(fraction) < 2:
        fraction = fraction.ljust(2, "0")
    return f"{sign}{units}.{fraction} {value.currency_code}"


async def _chunks(
    path: Path,
    first: Callable[[bytes], Any],
    rest: Callable[[bytes], Any],
    advance: Callable[[int], None],
) -> AsyncIterator[Any]:
    with path.open("rb") as stream:
        chunk = stream.read(CHUNK_BYTES)
        yield first(chunk)
        advance(len(chunk))
        while True:
            chunk = await asyncio.to_thread(stream.read, CHUNK_BYTES)
            if not chunk:
                return
            yield rest(chunk)
            advance(len(chunk))
