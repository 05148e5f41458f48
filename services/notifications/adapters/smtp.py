"""E-mail over SMTP with aiosmtplib: ``SMTP_URL`` names the server.

- ``smtp://host:port`` - plain SMTP, upgraded with STARTTLS when the server offers it;
  ``?starttls=require`` refuses to send without it, ``?starttls=off`` never tries;
- ``smtps://host:port`` - TLS from the first byte (port 465 by default);
- ``user:password@`` - SMTP AUTH (after TLS when TLS is used).
The server's answer decides what happens next: 5xx for the recipient is permanent
(the message bounces), anything else that fails (refused connection, timeout, 4xx)
is temporary and the dispatcher tries again later.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from services.notifications.service_layer.ports import (
    OutgoingEmail,
    PermanentFailure,
    TemporaryFailure,
)


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # None: when offered
    username: str
    password: str
    verify_tls: bool = True


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"SMTP_URL: scheme must be smtp or smtps, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("SMTP_URL: no host")
    query = parse_qs(parts.query)
    mode = (query.get("starttls", ["auto"])[0]).lower()
    if mode not in ("auto", "require", "off"):
        raise ValueError("SMTP_URL: starttls must be auto, require or off")
    implicit = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=False if implicit or mode == "off" else (True if mode == "require" else None),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        verify_tls=query.get("verify", ["true"])[0].lower() != "false",
    )


def build_mime(email: OutgoingEmail, mail_from: str) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = mail_from
    mime["To"] = email.to
    mime["Subject"] = email.subject
    mime["Date"] = formatdate(localtime=False, usegmt=True)
    mime["Message-ID"] = email.message_id or make_msgid()
    for name, value in email.headers.items():
        mime[name] = value
    mime.set_content(email.text)
    mime.add_alternative(email.html, subtype="html")
    for attachment in email.attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        mime.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.file_name,
        )
    return mime


class SmtpEmailSender:
    def __init__(self, url: str, mail_from: str, *, timeout: float = 30.0) -> None:
        self.target = parse_smtp_url(url)
        self._mail_from = mail_from
        self._timeout = timeout
        # Once: loading the CA store costs ~90 ms, more than sending an invoice.
        self._tls = ssl.create_default_context()
        if not self.target.verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    async def send(self, email: OutgoingEmail) -> str:
        target = self.target
        mime = build_mime(email, self._mail_from)
        try:
            errors, answer = await aiosmtplib.send(
                mime,
                hostname=target.host,
                port=target.port,
                use_tls=target.implicit_tls,
                start_tls=target.starttls,
                username=target.username or None,
                password=target.password or None,
                tls_context=self._tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            message = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(code >= 500 for code in codes):
                raise PermanentFailure(f"SMTP refused the recipient: {message}") from exc
            raise TemporaryFailure(f"SMTP deferred the recipient: {message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from exc
            raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"SMTP server unavailable: {exc}") from exc
        if errors:
            raise TemporaryFailure(f"SMTP deferred: {errors}")
        return answer
