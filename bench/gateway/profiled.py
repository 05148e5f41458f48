"""``python -m bench.gateway.profiled OUT``: ``python -m gateway`` under cProfile.

For ``python -m bench.gateway --profile OUT``. uvicorn re-raises SIGTERM after its
graceful stop; the handler installed here turns that into ``SystemExit`` so the
profile is written before the process ends.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from typing import Any

from gateway.main import main


def _exit(*_: Any) -> None:
    sys.exit(0)


def run(out: str) -> None:
    signal.signal(signal.SIGTERM, _exit)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    run(sys.argv[1])
