"""Settings of the notifications service, from ``NOTIFICATIONS_*`` and shared variables.

Shared (``services.common.config``): ``RECKON_SERVICE_TOKEN``, ``REDIS_URL`` (required),
``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``.
Own: ``NOTIFICATIONS_LISTEN`` (default ``127.0.0.1:50057``), ``NOTIFICATIONS_DATABASE_URL``,
``NOTIFICATIONS_DATABASE_SCHEMA``, ``NOTIFICATIONS_RULES_FILE`` (default: the rules shipped
in ``adapters/rules.yaml``), ``NOTIFICATIONS_TEMPLATES_DIR`` (default ``adapters/templates``),
``NOTIFICATIONS_MAIL_FROM``, ``NOTIFICATIONS_SMS_SENDER``.
Channels: ``SMTP_URL`` (``smtp://`` or ``smtps://``, user:password for AUTH; unset: e-mails
wait in the queue), ``SMPP_URL`` (``smpp://system_id:password@host:port``; unset: SMS wait).
Peer: ``INVOICING_ADDR`` (invoice PDFs and e-invoices for attachments).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port
from services.notifications.adapters.smpp import parse_smpp_url
from services.notifications.adapters.smtp import parse_smtp_url
from services.notifications.adapters.templates import DEFAULT_DIR

DEFAULT_RULES = Path(__file__).parent / "adapters" / "rules.yaml"


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")
    service_name: ClassVar[str] = "notifications"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['notifications']}"
    rules_file: Path = DEFAULT_RULES
    templates_dir: Path = DEFAULT_DIR
    mail_from: str = "Reckon Billing <billing@reckon.localhost>"
    sms_sender: str = "Reckon"
    message_id_domain: str = "notifications.reckon"
    # Messages attempted per dispatcher pass, and at once.
    dispatch_batch_size: int = Field(default=200, ge=1)
    dispatch_concurrency: int = Field(default=16, ge=1, le=256)
    dispatch_interval_seconds: float = Field(default=0.5, gt=0)
    # An event a crashed consumer left pending is delivered again after this long.
    claim_idle_ms: int = Field(default=30_000, ge=1000)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # Events older than this (e.g. a new consumer group reading a long stream) send nothing.
    max_event_age_hours: float = Field(default=72.0, gt=0)
    smtp_url: str | None = Field(default=None, validation_alias="SMTP_URL")
    smpp_url: str | None = Field(default=None, validation_alias="SMPP_URL")
    invoicing_addr: str | None = Field(default=None, validation_alias="INVOICING_ADDR")

    @field_validator("smtp_url", "smpp_url", "invoicing_addr")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: str | None) -> str | None:
        if value:
            parse_smtp_url(value)
        return value

    @field_validator("smpp_url")
    @classmethod
    def _smpp(cls, value: str | None) -> str | None:
        if value:
            parse_smpp_url(value)
        return value

    @field_validator("invoicing_addr")
    @classmethod
    def _invoicing(cls, value: str | None) -> str | None:
        if value:
            parse_host_port(value)
        return value

    @property
    def own_ports(self) -> frozenset[int]:
        """The suite's service ports: webhooks may not target them on this machine."""
        return frozenset(DEFAULT_PORTS.values()) | {parse_host_port(self.listen)[1]}
