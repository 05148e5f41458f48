"""What the steps of ``reckon demo`` share: the ``Story`` (channels, facts), a step,
the story's error, and small helpers (split out of ``suite/demo.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console, RenderableType
from rich.markup import escape

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2_grpc
from reckon.rating.v1 import rating_pb2_grpc
from services.common.clock import SharedTestClock
from services.common.grpc_errors import details_of

ROOT_SPAN_NAME = "reckon.demo story"
# The referral consumer's span closes the story's trace; wait this long for it.
TRACE_WAIT_SECONDS = 10.0
CALL_TIMEOUT_SECONDS = 10.0
# Longer than the services' OTEL_BSP_SCHEDULE_DELAY (200 ms): one export round.
SETTLE_SECONDS = 0.4
DEMO_SERVICE = "reckon-demo"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_CATALOG = SAMPLES_DIR / "catalog.yaml"
SAMPLE_CDRS = SAMPLES_DIR / "cdr" / "conference-legs.csv"
# The demo's plan: it must be a plan of the sample catalog.
PLAN_CODE = "conference-pro"
# Rating learns accounts from accounts' events; this is how long the story waits for it.
ACCOUNT_VIEW_WAIT_SECONDS = 15.0


class StoryError(RuntimeError):
    """A step cannot go on for a reason other than a refused call (e.g. a missing sample)."""


@dataclass
class Story:
    """What the steps share: channels to the running services and what earlier steps made."""

    console: Console
    channels: Mapping[str, grpc.aio.Channel]
    facts: dict[str, Any] = field(default_factory=dict)

    def fact(self, name: str) -> Any:
        if name not in self.facts:
            raise LookupError(f"an earlier step should have produced {name!r}")
        return self.facts[name]

    @property
    def accounts(self) -> Any:
        """The accounts service (an ``AccountsServiceAsyncStub``)."""
        return accounts_pb2_grpc.AccountsServiceStub(self.channels["accounts"])

    @property
    def rating(self) -> Any:
        """The rating service (a ``RatingServiceAsyncStub``)."""
        return rating_pb2_grpc.RatingServiceStub(self.channels["rating"])

    @property
    def charging(self) -> Any:
        """The charging service (a ``ChargingServiceAsyncStub``)."""
        return charging_pb2_grpc.ChargingServiceStub(self.channels["charging"])


StepAction = Callable[[Story], Awaitable[RenderableType]]


@dataclass(frozen=True)
class StoryStep:
    title: str
    # Services the step calls: it is skipped while any of them is not running.
    needs: tuple[str, ...]
    act: StepAction


def suite_now(story: Story) -> datetime:
    """The suite's "now": its test clock's when it runs on one, else the machine's."""
    state = story.facts.get("suite")
    if state is None or not state.test_clock:
        return datetime.now(UTC)
    clock = SharedTestClock(state.redis_url)
    try:
        clock.refresh()
        return clock.now()
    finally:
        clock.close()


def request_id() -> str:
    return str(uuid.uuid4())


def refusal(error: grpc.RpcError) -> str:
    """``FAILED_PRECONDITION ACCOUNT_NOT_ACTIVE: message`` from a failed call's rich status."""
    details = details_of(error)
    reason = details.reason if details.reason != details.code.name else ""
    label = " ".join(part for part in (details.code.name, reason) if part)
    # Escaped: the server's words must not be read as Rich markup.
    return escape(f"{label}: {details.message}")


def account_state(account: accounts_pb2.Account) -> str:
    """``ACCOUNT_STATE_SUSPENDED: reason``."""
    return f"{accounts_pb2.AccountState.Name(account.state)}: {escape(account.state_reason)}"
