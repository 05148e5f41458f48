"""What the service layer needs from the outside world, as protocols.

The adapters implement them over SMTP (aiosmtplib), SMPP (smpplib), HTTP (httpx),
Jinja2 and invoicing's gRPC API; another SMS gateway (an HTTP one) only has to be
an ``SmsGateway``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class TemplateProblem(Exception):
    """A template that is unknown or fails to render: the message fails with this reason."""


class PermanentFailure(Exception):
    """The recipient is refused for good (SMTP 5xx, SMSC rejecting the number)."""


class TemporaryFailure(Exception):
    """The server is down, busy or refusing for now: try again later."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Attachment:
    file_name: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # the Message-ID header, derived from event id and recipient
    to: str
    subject: str
    text: str
    html: str
    attachments: Sequence[Attachment] = field(default_factory=tuple)
    headers: Mapping[str, str] = field(default_factory=dict)


class Renderer(Protocol):
    def email(self, template: str, language: str, context: Mapping[str, Any]) -> RenderedEmail: ...

    def sms(self, template: str, language: str, context: Mapping[str, Any]) -> str: ...

    def has(self, template: str, channel: str) -> bool: ...


class EmailSender(Protocol):
    async def send(self, email: OutgoingEmail) -> str:
        """Hand the e-mail to the server; returns the server's answer. Raises the failures."""
        ...


class SmsGateway(Protocol):
    async def send(self, sender: str, to: str, text: str, reference: int) -> list[str]:
        """Submit the text (one or more parts); returns the gateway's ids, one per part."""
        ...

    async def receipts(self) -> list[tuple[str, bool, str]]:
        """Delivery receipts that arrived since the last call: (id, delivered, state)."""
        ...


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: str


class WebhookSender(Protocol):
    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        """POST; raises TemporaryFailure when nothing answered (refused, timed out)."""
        ...


class InvoiceDocuments(Protocol):
    async def fetch(self, invoice_id: str, kind: str) -> Attachment:
        """The invoice's document: ``invoice_pdf`` or ``einvoice_xml`` (UBL)."""
        ...
