"""What every rating RPC shares: limits, request checks, upload spooling, the thread hop.

``RpcBase`` holds the application and runs the synchronous use cases in a thread
(ADR 0002); the per-use-case RPC mixins (``catalog_rpc``, ``rating_rpc``,
``usage_rpc``) derive from it and ``servicer.RatingServicer`` composes them.
Uploads (usage files, destination tables) are spooled to a temporary file while
they arrive, hashing as they go, so a file of any size is imported in constant
memory and identified by its checksum before a single record is rated.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from services.common.errors import InvalidArgument, Violations

if TYPE_CHECKING:  # the composition root imports this module
    from services.rating.bootstrap import RatingApp

T = TypeVar("T")

MAX_REQUEST_ID: Final = 128
MAX_FILE_NAME: Final = 255
MAX_DESTINATION_UPLOAD: Final = 64 * 1024 * 1024
MAX_QUOTE_UNITS: Final = 10**15

# The ErrorInfo domain of rating's errors (create_server uses the same).
DOMAIN = "reckon.rating"
# Longer ids and codes than any rating issues are bad input, not "not found".
MAX_CODE = 64
MAX_FILE_ID = 40


def _request_id(value: str, violations: Violations) -> None:
    if len(value) > MAX_REQUEST_ID:
        violations.add("request_id", f"must be at most {MAX_REQUEST_ID} characters")


def _file_name(value: str, violations: Violations) -> str:
    name = os.path.basename(value.replace("\\", "/"))
    if len(name) > MAX_FILE_NAME:
        violations.add("file_name", f"must be at most {MAX_FILE_NAME} characters")
    if any(ord(ch) < 32 for ch in name):
        violations.add("file_name", "must not contain control characters")
    return name


def _discard(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class _Spooled:
    path: Path
    checksum: str
    size: int
    first: Any


async def _spool(
    requests: AsyncIterator[Any],
    directory: Path,
    *,
    limit: int | None = None,
    check_first: Callable[[Any], object] | None = None,
) -> _Spooled:
    """Write the ``chunk`` of every message to a temporary file; keep the first message.

    ``check_first`` validates the first message (the settings) before anything is
    written, so a bad request is refused without receiving the whole file.
    """
    handle, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    first = None
    try:
        with os.fdopen(handle, "wb") as sink:
            async for request in requests:
                if first is None:
                    first = request
                    if check_first is not None:
                        check_first(request)
                chunk = request.chunk
                if chunk:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise InvalidArgument.field(
                            "chunk", f"the file is larger than {limit // (1024 * 1024)} MiB"
                        )
                    digest.update(chunk)
                    sink.write(chunk)
    except BaseException:
        _discard(path)
        raise
    return _Spooled(path, digest.hexdigest(), size, first)


class RpcBase:
    """The application and the thread hop every RPC mixin uses."""

    _app: RatingApp

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)
