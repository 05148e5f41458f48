"""What each service process of the suite is told through its environment.

Pure functions, so the rules are tested without starting anything: where each
service listens (``<SVC>_LISTEN``), where it finds its peers (``<SVC>_ADDR``),
the shared token, Redis, data directory and OpenTelemetry settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from services.common.config import parse_host_port
from suite.service_token import TOKEN_ENV
from suite.services import ServiceSpec

LOOPBACK = "127.0.0.1"
# Recognised in overrides so peers get a dialable address; the suite itself binds loopback.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}

# The embedded receiver speaks the OTLP trace service only.
RECEIVER_OTEL_ENV = {
    "OTEL_EXPORTER_OTLP_INSECURE": "true",
    # Spans reach the receiver within a fraction of a second instead of the SDK's 5 s,
    # so `reckon demo` and the e2e test see a whole trace promptly.
    "OTEL_BSP_SCHEDULE_DELAY": "200",
}


class AddressError(ValueError):
    """A ``<SVC>_LISTEN`` override the suite cannot use."""


def plan_addresses(
    specs: Sequence[ServiceSpec],
    environ: Mapping[str, str],
    *,
    free_ports: bool,
    pick_port: Callable[[], int],
) -> dict[str, str]:
    """The host:port each service listens on.

    An explicit ``<SVC>_LISTEN`` wins; otherwise the service's default port, or a
    free port when ``free_ports`` (tests, a demo's throw-away suite). Port 0 in an
    override also means "pick one", because peers must be told the real port.
    """
    addresses: dict[str, str] = {}
    picked: set[int] = set()

    def pick_unused() -> int:
        # Each pick binds port 0 and lets go: the OS may hand the same port out twice in
        # a row, and two services told one port would leave one of them unable to bind.
        for _ in range(100):
            port = pick_port()
            if port not in picked:
                picked.add(port)
                return port
        raise AddressError("no unused free port found after 100 picks")

    for spec in specs:
        override = environ.get(f"{spec.env_prefix}_LISTEN")
        if override:
            try:
                host, port = parse_host_port(override)
            except ValueError as exc:
                raise AddressError(f"{spec.env_prefix}_LISTEN: {exc}") from None
        else:
            host, port = LOOPBACK, 0 if free_ports else spec.default_port
        addresses[spec.name] = f"{host}:{port or pick_unused()}"
    return addresses


def dial_address(listen: str) -> str:
    """The address a client on this machine dials to reach a server bound to ``listen``."""
    host, port = parse_host_port(listen)
    if host in _WILDCARD_HOSTS:
        host = LOOPBACK
    return f"{host}:{port}"


def otel_env(
    service: str, environ: Mapping[str, str], receiver_endpoint: str | None
) -> dict[str, str]:
    """OpenTelemetry variables for one service.

    With the embedded receiver, spans go there and metrics are off (the receiver
    does not take them; point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at a collector for
    those). Without it, the user's ``OTEL_*`` settings pass through untouched.
    """
    # Always per service: a global OTEL_SERVICE_NAME would merge every service into one.
    env = {"OTEL_SERVICE_NAME": f"reckon-{service}"}
    if receiver_endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver_endpoint
        env.update(RECEIVER_OTEL_ENV)
        if environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() == "otlp":
            env["OTEL_METRICS_EXPORTER"] = "none"
    return env


def build_service_env(
    spec: ServiceSpec,
    *,
    environ: Mapping[str, str],
    token: str,
    redis_url: str,
    data_dir: Path,
    addresses: Mapping[str, str],
    receiver_endpoint: str | None,
    code_root: Path | None = None,
) -> dict[str, str]:
    """The complete environment of one service process.

    It inherits the caller's environment (PATH, ``DATABASE_URL``, ``OTEL_*``,
    proxies...) and overrides what the suite decides.
    """
    env = dict(environ)
    env.update(
        {
            TOKEN_ENV: token,
            "REDIS_URL": redis_url,
            "RECKON_DATA_DIR": str(data_dir),
            f"{spec.env_prefix}_LISTEN": addresses[spec.name],
            # Logs go to a file; unbuffered so a crash's last words are in it.
            "PYTHONUNBUFFERED": "1",
        }
    )
    for peer, address in addresses.items():
        env[f"{peer.upper()}_ADDR"] = dial_address(address)
    env.update(otel_env(spec.name, environ, receiver_endpoint))
    if code_root is not None:
        # The child must import the same `services` package the registry found,
        # whatever directory `reckon` was started from.
        existing = environ.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{code_root}{os.pathsep}{existing}" if existing else str(code_root)
    return env
