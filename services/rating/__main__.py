"""``python -m services.rating``: run the rating service, configured by the environment.

Logging and telemetry are set up before anything that opens connections, so the
engines and clients created at start are traced. A configuration problem is one
clear message and exit status 2, not a traceback.
"""

from __future__ import annotations

import asyncio
import sys

from services.common.config import ConfigError, load_settings
from services.common.logs import configure_logging
from services.common.telemetry import setup_telemetry
from services.rating.config import RatingSettings


def main() -> int:
    try:
        settings = load_settings(RatingSettings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    configure_logging("rating", settings.log_level)
    telemetry = setup_telemetry("rating")
    from services.rating.entrypoints.main import run

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
