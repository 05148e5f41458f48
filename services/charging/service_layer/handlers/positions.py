"""A session's priced position per rating group (cumulative pricing, ADR 0011).

The credit-control handlers remember it per open session (ADR 0019) and quote
grants and reports from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.charging.domain.services import ServiceDefinition


@dataclass(frozen=True, slots=True)
class Position:
    """A session's priced position in one rating group (cumulative pricing, ADR 0011)."""

    used: int = 0  # units charged in money so far in the session
    grant_base: int | None = None  # the position a grant starts from, when the script said
    kind: str = ""  # the class of the open reservation (u units, m money, f free)


def cumulative(service: ServiceDefinition) -> bool:
    return service.is_rated and not service.is_free


SessionKey = tuple[str, str]  # (account id, session id)
Known = tuple[int, dict[int, Position]]  # (start ms, position per rating group)


def positions_of(cum: dict[str, Any], now_ms: int) -> tuple[int, dict[int, Position]]:
    """(start ms, positions) from a session's 'cum' JSON or a STALE answer."""
    positions = {
        int(group): Position(
            int(raw.get("n", "0")), int(raw["gb"]) if raw.get("gb") is not None else None
        )
        for group, raw in (cum.get("g") or {}).items()
    }
    return int(cum.get("t0") or now_ms), positions
