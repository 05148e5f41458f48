"""``python -m gateway``: load settings, set up logs and telemetry, serve with uvicorn.

A configuration problem ends the process with status 2 and one line naming the
variable, like the services. uvicorn handles SIGINT/SIGTERM: it stops accepting,
finishes in-flight requests, then runs the app's shutdown (channels, engine).
"""

from __future__ import annotations

import sys

import uvicorn

from gateway.config import GatewaySettings
from services.common.config import ConfigError, load_settings, parse_host_port
from services.common.logs import configure_logging
from services.common.telemetry import setup_telemetry

EXIT_CONFIG_ERROR = 2


def main() -> int:
    try:
        settings = load_settings(GatewaySettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    configure_logging(settings.service_name, settings.log_level)
    telemetry = setup_telemetry(settings.service_name)
    from gateway.app import create_app  # after telemetry, like the services

    host, port = parse_host_port(settings.listen)
    try:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            access_log=False,
            proxy_headers=False,
        )
    finally:
        telemetry.shutdown()
    return 0
