"""The registry of Reckon services that ``reckon up`` knows how to start.

A service joins the suite by being listed here; it is started only once its
package exists (``services.<name>`` with a ``__main__``), so the registry can
name services that later issues will build without ``reckon up`` failing today.
The order is the start order: services that others call come first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.config import DEFAULT_PORTS

GATEWAY_PORT = 8080  # GATEWAY_LISTEN overrides it, like <SVC>_LISTEN


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the suite: how to run it and where it listens by default."""

    name: str
    default_port: int
    # Set for what is not under services/ (the gateway: ``python -m gateway``).
    module_name: str = ""

    @property
    def module(self) -> str:
        return self.module_name or f"services.{self.name}"

    @property
    def env_prefix(self) -> str:
        """Prefix of its variables: ``ACCOUNTS_LISTEN``, ``ACCOUNTS_ADDR``."""
        return self.name.upper()


# Start order: accounts and rating answer questions the others ask.
REGISTRY: tuple[ServiceSpec, ...] = (
    *(
        ServiceSpec(name, DEFAULT_PORTS[name])
        for name in (
            "accounts",
            "rating",
            "charging",
            "invoicing",
            "payments",
            "dunning",
            "notifications",
        )
    ),
    # Last: the HTTP edge calls the others (its health is HTTP, see suite.health).
    ServiceSpec("gateway", GATEWAY_PORT, module_name="gateway"),
)

ModuleProbe = Callable[[str], bool]


def module_runnable(module: str) -> bool:
    """True when ``python -m <module>`` can run: the package and its ``__main__`` exist."""
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        # find_spec imports the parent package; a missing parent means "not built yet".
        return False


def available_services(probe: ModuleProbe = module_runnable) -> list[ServiceSpec]:
    """Services of the registry whose code exists, in start order."""
    return [spec for spec in REGISTRY if probe(spec.module)]


class UnknownServiceError(ValueError):
    """A requested service is not in the registry or not built yet."""


def select_services(
    requested: Sequence[str] | None, probe: ModuleProbe = module_runnable
) -> list[ServiceSpec]:
    """The services to start: all available ones, or the requested subset in start order."""
    available = available_services(probe)
    if not requested:
        return available
    known = {spec.name for spec in REGISTRY}
    built = {spec.name for spec in available}
    wanted = {name.strip().lower() for name in requested if name.strip()}
    unknown = sorted(wanted - known)
    if unknown:
        raise UnknownServiceError(
            f"unknown service(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    missing = sorted(wanted - built)
    if missing:
        raise UnknownServiceError(
            f"not built yet: {', '.join(missing)}; available: {', '.join(sorted(built)) or 'none'}"
        )
    return [spec for spec in available if spec.name in wanted]
