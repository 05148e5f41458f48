"""``python -m services.dunning``: load settings, set up logs and telemetry, serve.

Configuration problems (a missing ``RECKON_SERVICE_TOKEN`` or ``REDIS_URL``, a
malformed value) end the process with status 2 and one line on stderr naming
the variable, without a traceback. Logging and telemetry are configured before
any engine or client exists, so SQL, Redis and gRPC are instrumented from the
first call.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.common.config import ConfigError, load_settings
from services.common.logs import configure_logging
from services.common.telemetry import setup_telemetry
from services.dunning.config import DunningSettings

log = logging.getLogger("services.dunning")

EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2


def main() -> int:
    try:
        settings = load_settings(DunningSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    configure_logging(settings.service_name, settings.log_level)
    telemetry = setup_telemetry(settings.service_name)
    # Imported only now: nothing that creates engines or clients exists before telemetry.
    from services.dunning import bootstrap

    try:
        asyncio.run(bootstrap.run(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during the drain
        pass
    except Exception:
        # E.g. the database or Redis is unreachable at start: one structured log line
        # (with the traceback inside it) and a non-zero exit for the supervisor.
        log.exception("dunning stopped: it could not start or failed while serving")
        return EXIT_FAILURE
    finally:
        telemetry.shutdown()
    return 0
