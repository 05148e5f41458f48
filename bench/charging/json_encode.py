"""``python -m bench.charging.json_encode``: what the scripts' exact JSON (``J()``) costs.

Every charging script writes its tables through ``J()`` (``lua/_lib.lua``) rather
than Redis's ``cjson.encode``, which keeps only 14 significant digits. ``J()`` runs
cjson and scans its text for an exponent; only a table holding an integer of 10^14
or more is written again. This times both, inside one script on a Redis started
here, on a typical session answer and on one with a 15-digit amount, alternating
the two so a noisy neighbour hits both alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources
from pathlib import Path

import redis

from services.charging.adapters.redis_store import LUA_PACKAGE
from suite.redis_server import EmbeddedRedis

_BODY = """
local small = {k='u', al={{'main-EUR', 123456}, {'pool-1', 987654}}, cur='EUR',
  sw=1764000000000, rgs={{g=1, gu='60', rc='2001', cm='100000'}}}
local large = {k='u', al={{'main-EUR', 123456789012345}, {'pool-1', 987654}}, cur='EUR',
  sw=1764000000000, rgs={{g=1, gu='60', rc='2001', cm='100000'}}}
local t = ARGV[3] == 'large' and large or small
local encode = ARGV[2] == 'J' and J or cjson.encode
local text
for _ = 1, tonumber(ARGV[1]) do
  text = encode(t)
end
return text
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encodes", type=int, default=200_000, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    prelude = resources.files(LUA_PACKAGE).joinpath("_lib.lua").read_text(encoding="utf-8")
    script = f"{prelude}\n{_BODY}"
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            client = redis.Redis.from_url(server.url)
            print(f"{'table':<6} {'encoder':<13} us per encode (rounds: {args.rounds})")
            for table in ("small", "large"):
                for name, mode in (("cjson.encode", "C"), ("J()", "J")):
                    figures = []
                    for _ in range(args.rounds):
                        started = time.perf_counter()
                        client.eval(script, 0, args.encodes, mode, table)
                        figures.append((time.perf_counter() - started) / args.encodes * 1e6)
                    shown = ", ".join(f"{f:.2f}" for f in figures)
                    print(f"{table:<6} {name:<13} {shown}")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
