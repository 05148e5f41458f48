"""``DATA_DIR/suite.json``: what a running suite tells ``reckon status`` and ``reckon demo``.

Written by the supervisor once every service is serving, removed when it stops.
It holds addresses, PIDs and where the token is kept, never the token itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suite.service_token import TOKEN_ENV, read_token_file

STATE_FILE_NAME = "suite.json"
STATE_VERSION = 1


class SuiteStateError(RuntimeError):
    """No usable suite.json in the data directory."""


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    address: str
    pid: int
    log_file: str


@dataclass(frozen=True)
class SuiteState:
    data_dir: str
    supervisor_pid: int
    started_at: str
    redis_url: str
    # PID of the Redis the supervisor started; None when REDIS_URL named an external one.
    redis_pid: int | None
    # None when the token came from RECKON_SERVICE_TOKEN: clients need that variable too.
    token_file: str | None
    # The embedded receiver's host:port; None when spans go to an external collector.
    trace_receiver: str | None
    otlp_endpoint: str | None
    traces_file: str | None
    services: list[ServiceRecord] = field(default_factory=list)
    # Started with `reckon up --test-clock`: `reckon clock` may move the suite's time.
    test_clock: bool = False
    version: int = STATE_VERSION

    def address_of(self, service: str) -> str | None:
        for record in self.services:
            if record.name == service:
                return record.address
        return None

    def token(self, environ: dict[str, str] | None = None) -> str:
        """The token clients of this suite must present."""
        if self.token_file is not None:
            return read_token_file(Path(self.token_file))
        value = (environ if environ is not None else dict(os.environ)).get(TOKEN_ENV)
        if not value:
            raise SuiteStateError(
                f"the suite was started with {TOKEN_ENV} from the environment; set it here too"
            )
        return value

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SuiteState:
        raw: dict[str, Any] = json.loads(text)
        if raw.get("version") != STATE_VERSION:
            raise SuiteStateError(f"suite.json version {raw.get('version')!r} is not supported")
        services = [ServiceRecord(**record) for record in raw.pop("services", [])]
        return cls(**raw, services=services)


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE_NAME


def write_state(data_dir: Path, state: SuiteState) -> Path:
    """Write atomically: a reader never sees half a file."""
    path = state_path(data_dir)
    partial = path.with_suffix(".json.partial")
    partial.write_text(state.to_json() + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def read_state(data_dir: Path) -> SuiteState:
    path = state_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteStateError(f"no suite is running from {data_dir} (no {path.name})") from None
    try:
        return SuiteState.from_json(text)
    except (ValueError, TypeError) as exc:
        raise SuiteStateError(f"{path} is unreadable: {exc}") from None


def remove_state(data_dir: Path, supervisor_pid: int) -> None:
    """Remove suite.json if it is still ours (another supervisor may have replaced it)."""
    try:
        current = read_state(data_dir)
    except SuiteStateError:
        return
    if current.supervisor_pid == supervisor_pid:
        state_path(data_dir).unlink(missing_ok=True)
