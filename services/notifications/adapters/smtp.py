"""E-mail over SMTP with aiosmtplib: ``SMTP_URL`` names the server.

- ``smtp://host:port`` - plain SMTP, upgraded with STARTTLS when the server offers it;
  ``?starttls=require`` refuses to send without it, ``?starttls=off`` never tries;
- ``smtps://host:port`` - TLS from the first byte (port 465 by default);
- ``user:password@`` - SMTP AUTH (after TLS when TLS is used).
The server's answer decides what happens next: 5xx for the recipient is permanent
(the message bounces), anything else that fails (refused connection, timeout, 4xx)
is temporary and the dispatcher tries again later. Connections are pooled and
reused (``SmtpEmailSender``), and the message bytes are built in one pass
(``message_bytes``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
import time
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import encode_rfc2231, formataddr, formatdate, make_msgid, parseaddr
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
    """The e-mail as an ``EmailMessage`` (the reference form; ``message_bytes`` is the fast one)."""
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


_CRLF = b"\r\n"


def _one_line(value: str) -> str:
    # A header value never carries a line break (header injection); folding is Header's.
    return value.replace("\r", " ").replace("\n", " ")


def _header(name: str, value: str) -> bytes:
    """One header line, RFC 2047-encoded (and folded) only when it needs to be."""
    if value.isascii() and len(name) + len(value) < 76 and "\n" not in value and "\r" not in value:
        return f"{name}: {value}\r\n".encode("ascii")
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(_one_line(value), charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, value: str) -> bytes:
    display, address = parseaddr(value)
    if display and not display.isascii():
        return f"{name}: {formataddr((display, address), charset='utf-8')}\r\n".encode("ascii")
    return _header(name, value)


def _base64_lines(content: bytes) -> bytes:
    # encodebytes writes 76-character lines (RFC 2045) with LF; SMTP wants CRLF.
    return base64.encodebytes(content).replace(b"\n", _CRLF)


def _text_body(text: str) -> tuple[bytes, bytes]:
    """The transfer-encoding header and body of a text part: 7bit when it is plain ASCII
    with short lines (readable as it is in the stored .eml, e.g. to anyone searching a
    mailbox for an invoice number), else base64 of its UTF-8."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if lines.isascii() and all(len(line) <= 998 for line in lines.split("\n")):
        body = lines.encode("ascii").replace(b"\n", _CRLF)
        if not body.endswith(_CRLF):
            body += _CRLF
        return b"Content-Transfer-Encoding: 7bit\r\n\r\n", body
    return b"Content-Transfer-Encoding: base64\r\n\r\n", _base64_lines(lines.encode("utf-8"))


def _filename_parameter(file_name: str) -> str:
    if file_name.isascii() and '"' not in file_name and "\\" not in file_name:
        return f'filename="{file_name}"'
    return f"filename*={encode_rfc2231(file_name, 'utf-8')}"


def message_bytes(email: OutgoingEmail, mail_from: str) -> bytes:
    """The e-mail as the bytes DATA carries, built in one pass.

    The same MIME structure as ``build_mime`` (multipart/mixed of a
    multipart/alternative text+HTML, 7bit when ASCII, and the attachments, base64)
    without the
    ``email`` package's header registry and generator, which cost several times
    the SMTP exchange for an invoice with its PDF. Each attachment is encoded
    once, by ``base64.encodebytes``; boundaries are random per message and cannot
    occur in base64 text.
    """
    token = secrets.token_hex(12)
    outer, inner = f"=_mixed_{token}", f"=_alt_{token}"
    head = [
        _address_header("From", mail_from),
        _address_header("To", email.to),
        _header("Subject", email.subject),
        _header("Date", formatdate(localtime=False, usegmt=True)),
        _header("Message-ID", email.message_id or make_msgid()),
        *(_header(name, value) for name, value in email.headers.items()),
        b"MIME-Version: 1.0\r\n",
    ]
    alternative = b"".join(
        [
            f"--{inner}\r\n".encode(),
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            *_text_body(email.text),
            f"--{inner}\r\n".encode(),
            b'Content-Type: text/html; charset="utf-8"\r\n',
            *_text_body(email.html),
            f"--{inner}--\r\n".encode(),
        ]
    )
    if not email.attachments:
        head.append(f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'.encode())
        return b"".join(head) + alternative
    head.append(f'Content-Type: multipart/mixed; boundary="{outer}"\r\n\r\n'.encode())
    body = [
        f"--{outer}\r\n".encode(),
        f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'.encode(),
        alternative,
    ]
    for attachment in email.attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        body += [
            f"--{outer}\r\n".encode(),
            f"Content-Type: {maintype}/{subtype or 'octet-stream'}\r\n".encode(),
            b"Content-Disposition: attachment; %s\r\n"
            % _filename_parameter(attachment.file_name).encode("ascii"),
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            _base64_lines(attachment.content),
        ]
    body.append(f"--{outer}--\r\n".encode())
    return b"".join(head) + b"".join(body)


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    used: int = 0
    idle_since: float = 0.0


class SmtpEmailSender:
    """A small pool of persistent SMTP connections, many messages per connection.

    Each message is one MAIL/RCPT/DATA transaction on a connection taken from the
    pool; after a refusal the transaction is reset (RSET) and the connection goes
    back. A connection the server closed while it was idle fails at MAIL, before
    anything of the message was sent, so that message is tried once more on a new
    connection; any later failure is the message's own (the dispatcher retries it
    with the same Message-ID). Connections are renewed after ``max_messages``
    messages or ``max_idle`` seconds without use.
    """

    def __init__(
        self,
        url: str,
        mail_from: str,
        *,
        timeout: float = 30.0,
        pool_size: int = 4,
        max_messages: int = 1000,
        max_idle: float = 30.0,
    ) -> None:
        self.target = parse_smtp_url(url)
        self._mail_from = mail_from
        self._envelope_from = parseaddr(mail_from)[1] or mail_from
        self._timeout = timeout
        self._max_messages = max_messages
        self._max_idle = max_idle
        self._pool_size = pool_size
        self._idle: list[_Connection] = []
        self._gate: asyncio.Semaphore | None = None
        # Once: loading the CA store costs ~90 ms, more than sending an invoice.
        self._tls = ssl.create_default_context()
        if not self.target.verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    async def _connect(self) -> _Connection:
        target = self.target
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            use_tls=target.implicit_tls,
            start_tls=target.starttls,
            username=target.username or None,
            password=target.password or None,
            tls_context=self._tls,
            timeout=self._timeout,
        )
        await smtp.connect()
        return _Connection(smtp)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.smtp.is_connected and now - connection.idle_since < self._max_idle:
                return connection
            connection.smtp.close()
        return None

    def _give_back(self, connection: _Connection) -> None:
        if connection.used >= self._max_messages or not connection.smtp.is_connected:
            connection.smtp.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def send(self, email: OutgoingEmail) -> str:
        data = message_bytes(email, self._mail_from)
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._pool_size)
        async with self._gate:
            try:
                connection = self._take_idle()
                reused = connection is not None
                if connection is None:
                    connection = await self._connect()
                try:
                    try:
                        await connection.smtp.mail(self._envelope_from)
                    except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                        if not reused:
                            raise
                        # Closed by the server while idle: nothing was sent yet.
                        connection.smtp.close()
                        connection = await self._connect()
                        await connection.smtp.mail(self._envelope_from)
                    await connection.smtp.rcpt(email.to)
                    answer = await connection.smtp.data(data)
                except aiosmtplib.SMTPResponseException:
                    with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
                        await connection.smtp.rset()
                    self._give_back(connection)
                    raise
                except BaseException:
                    connection.smtp.close()
                    raise
                connection.used += 1
                self._give_back(connection)
                return answer.message
            except aiosmtplib.SMTPRecipientRefused as exc:
                detail = f"{exc.code} {exc.message}"
                if exc.code >= 500:
                    raise PermanentFailure(f"SMTP refused the recipient: {detail}") from exc
                raise TemporaryFailure(f"SMTP deferred the recipient: {detail}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                    raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from exc
                raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise TemporaryFailure(f"SMTP server unavailable: {exc}") from exc

    async def aclose(self) -> None:
        while self._idle:
            connection = self._idle.pop()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await connection.smtp.quit()
            connection.smtp.close()
