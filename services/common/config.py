"""The one config loader: environment variables with embedded defaults.

Every service describes its settings as a subclass of ``ServiceSettings`` and
loads them with ``load_settings``. A missing or malformed value stops the
process at start with a message naming the variable, instead of failing on the
first request that needs it.

Variables shared by all services: ``RECKON_SERVICE_TOKEN`` (required),
``REDIS_URL`` (required), ``DATABASE_URL`` (default: a SQLite file per service
in ``RECKON_DATA_DIR``), ``RECKON_DATA_DIR`` (default ``./data``),
``RECKON_LOG_LEVEL``, ``RECKON_SERVICE_TOKENS`` (more tokens servers accept, for a
rotation: ADR 0038), ``RECKON_OUTBOX_RETENTION_HOURS`` (default 24: how long
relayed events can be re-sent after Redis lost them), ``RECKON_ENV``
(``development`` or ``production``), ``RECKON_TEST_CLOCK`` (``1``: read "now"
from the suite's shared test clock, refused in production; ADR 0037).
Per service, with its prefix (``ACCOUNTS_``):
``*_LISTEN`` (host:port to bind), ``*_DATABASE_URL`` and ``*_DATABASE_SCHEMA``.
Peers are dialled at ``<SERVICE>_ADDR``.

Secrets can come from files, as Docker and Kubernetes mount them: for any variable
``X`` that is unset, ``X_FILE`` names a file whose content (trailing newline
stripped) is used instead (``RECKON_SERVICE_TOKEN_FILE=/run/secrets/service-token``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS: dict[str, int] = {
    "accounts": 50051,
    "rating": 50052,
    "charging": 50053,
    "invoicing": 50054,
    "payments": 50055,
    "dunning": 50056,
    "notifications": 50057,
}


class ConfigError(Exception):
    """Configuration that a service cannot start with; the message names each variable."""


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port (port 0-65535), got {value!r}")
    return host.strip("[]"), int(port_text)


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``service_name`` and ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = ""

    service_token: SecretStr = Field(validation_alias="RECKON_SERVICE_TOKEN", min_length=16)
    redis_url: str = Field(validation_alias="REDIS_URL")
    shared_database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=Path("data"), validation_alias="RECKON_DATA_DIR")
    log_level: str = Field(default="INFO", validation_alias="RECKON_LOG_LEVEL")
    # Relayed outbox rows are re-sent if Redis loses them within this span (ADR 0017):
    # it must outlast the time to notice and recover a Redis loss, consumers' lag included.
    outbox_retention_hours: int = Field(
        default=24, gt=0, validation_alias="RECKON_OUTBOX_RETENTION_HOURS"
    )

    environment: str = Field(default="development", validation_alias="RECKON_ENV")
    # The suite's shared test clock instead of the machine's (services.common.clock).
    test_clock: bool = Field(default=False, validation_alias="RECKON_TEST_CLOCK")

    listen: str = "127.0.0.1:0"
    database_url: str | None = None
    database_schema: str | None = None
    # Alembic upgrade at start: right for one process; turn off where a deploy job migrates.
    migrate_on_start: bool = True

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db, rediss:// or unix://")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if value.lower() not in {"development", "production"}:
            raise ValueError("expected development or production")
        return value.lower()

    @model_validator(mode="after")
    def _no_test_clock_in_production(self) -> ServiceSettings:
        if self.test_clock and self.environment == "production":
            raise ValueError(
                "RECKON_TEST_CLOCK: a test clock is never available with RECKON_ENV=production"
            )
        return self

    @property
    def outbox_retention(self) -> timedelta:
        return timedelta(hours=self.outbox_retention_hours)

    @property
    def effective_database_url(self) -> str:
        """This service's database: its own URL, else the shared one, else a SQLite file."""
        url = self.database_url or self.shared_database_url
        if url:
            return url
        return f"sqlite:///{(self.data_dir / f'{self.service_name}.db').resolve()}"

    @property
    def effective_database_schema(self) -> str | None:
        """On PostgreSQL each service keeps its tables in its own schema (default: its name)."""
        if self.effective_database_url.startswith("sqlite"):
            return None
        return self.database_schema or self.service_name


class TokenSettings(BaseSettings):
    """Service tokens a server accepts besides ``RECKON_SERVICE_TOKEN`` (ADR 0038).

    ``RECKON_SERVICE_TOKENS=new-token,old-token``: during a rotation servers accept
    both while clients move from the old ``RECKON_SERVICE_TOKEN`` to the new one.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "service"

    service_tokens: str = Field(default="", validation_alias="RECKON_SERVICE_TOKENS")

    @field_validator("service_tokens")
    @classmethod
    def _each_long_enough(cls, value: str) -> str:
        for token in (t.strip() for t in value.split(",")):
            if token and len(token) < 16:
                raise ValueError("every token must be at least 16 characters")
        return value

    @property
    def extra_tokens(self) -> list[str]:
        return [t.strip() for t in self.service_tokens.split(",") if t.strip()]


S = TypeVar("S", bound=BaseSettings)


FILE_SUFFIX = "_FILE"


def secrets_from_files(
    names: Iterable[str], environ: MutableMapping[str, str] | None = None
) -> None:
    """Set each unset variable of ``names`` from the file its ``X_FILE`` names.

    Only the settings' own variables: other programs' ``*_FILE`` variables in the same
    environment mean something else. A named file that cannot be read stops the start
    with a message naming the variable, rather than a later "is required".
    """
    env = os.environ if environ is None else environ
    for target in names:
        path = env.get(target + FILE_SUFFIX)
        if not path or env.get(target):
            continue
        try:
            env[target] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{target}{FILE_SUFFIX}: cannot read {path}: {exc.strerror}"
            ) from None


def variable_names(cls: type[BaseSettings]) -> list[str]:
    """The environment variables a settings class reads."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    names = []
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        names.append(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Load settings from the environment, turning validation errors into a ConfigError."""
    secrets_from_files(variable_names(cls))
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix") or "")
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            if name in cls.model_fields and cls.model_fields[name].validation_alias is None:
                name = f"{prefix}{name}".upper()
            message = "is required" if error["type"] == "missing" else error["msg"]
            problems.append(f"{name}: {message}" if error["loc"] else message)
        raise ConfigError(
            f"{getattr(cls, 'service_name', '') or 'service'} cannot start: " + "; ".join(problems)
        ) from None
