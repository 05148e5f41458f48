"""Redis connections and packaged Lua scripts.

Scripts are real ``.lua`` files inside a service's ``adapters/lua`` package,
read with ``importlib.resources`` and registered once (EVALSHA afterwards; redis-py
reloads a script transparently after a ``SCRIPT FLUSH`` or a restart). Every
script opens with a comment naming its KEYS, ARGV and return value.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def connect(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio Redis client; bytes in, bytes out (callers decode what they need)."""
    return aioredis.Redis.from_url(url, health_check_interval=30, **options)


def lua_source(package: str, name: str) -> str:
    return resources.files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")


class LuaScripts:
    """All ``*.lua`` files of a package, registered on one client, looked up by name."""

    def __init__(self, client: aioredis.Redis, package: str) -> None:
        self._scripts: dict[str, AsyncScript] = {}
        for entry in resources.files(package).iterdir():
            if entry.name.endswith(".lua"):
                self._scripts[entry.name[:-4]] = client.register_script(
                    entry.read_text(encoding="utf-8")
                )

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    def __contains__(self, name: str) -> bool:
        return name in self._scripts
