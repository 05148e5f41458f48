"""Child processes for benchmarks: start one, wait until it says it is ready, stop it by PID.

A child speaks one JSON object per line on stdout: the first line when it is
ready (e.g. ``{"port": 40123}``), the last one after SIGTERM with whatever it
counted while it ran. Its stderr is the benchmark's, so its errors show up.
Only the child started here is ever signalled, by its own PID.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


def announce(**fields: Any) -> None:
    """Child side: write one JSON line on stdout, at once."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


@dataclass
class Child:
    """A running child: what it announced when ready, and (after stop) its last words."""

    name: str
    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid


def _last_json(output: bytes) -> dict[str, Any]:
    for line in reversed(output.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return {}


@asynccontextmanager
async def child_process(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    ready_timeout_s: float = 30.0,
    stop_timeout_s: float = 15.0,
) -> AsyncIterator[Child]:
    """Run ``argv`` until the block ends; SIGTERM it then, SIGKILL if it does not exit."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    child: Child | None = None
    try:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_timeout_s)
        except TimeoutError:
            raise RuntimeError(f"{name} was not ready within {ready_timeout_s:.0f}s") from None
        if not line:
            code = await process.wait()
            raise RuntimeError(f"{name} exited with status {code} before it was ready")
        child = Child(name, process, json.loads(line))
        yield child
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                rest = await asyncio.wait_for(process.stdout.read(), stop_timeout_s)
                await asyncio.wait_for(process.wait(), stop_timeout_s)
            except TimeoutError:
                process.kill()
                rest = b""
                await process.wait()
        else:
            rest = await process.stdout.read()
        if child is not None:
            child.final = _last_json(rest)
