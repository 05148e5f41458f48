"""The channels against real servers: SMTP (the mail catcher), SMPP (an SMSC simulator),
and Standard Webhooks signatures checked by the ``standardwebhooks`` verifier."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifications.adapters.smpp import SmppGateway
from services.notifications.adapters.smtp import SmtpEmailSender, parse_smtp_url
from services.notifications.domain.signing import sign
from services.notifications.domain.sms import decode_part
from services.notifications.service_layer.ports import (
    Attachment,
    OutgoingEmail,
    TemporaryFailure,
)
from suite.mail_catcher import MailCatcher
from suite.redis_server import free_port
from suite.smsc import SmscSimulator


def sample_pdf(size: int = 50_000) -> bytes:
    """A real (if blank) PDF padded with a binary stream to ``size`` bytes."""
    stream = os.urandom(size)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


async def test_smtp_round_trip_keeps_the_pdf_byte_for_byte(tmp_path: Path) -> None:
    pdf = sample_pdf()
    with MailCatcher(tmp_path / "mail") as catcher:
        sender = SmtpEmailSender(catcher.url, "Reckon <billing@reckon.test>")
        await sender.send(
            OutgoingEmail(
                message_id="<evt_1.abc@notifications.reckon>",
                to="ada@example.com",
                subject="Invoice INV-2027-000001",
                text="Your invoice is attached.",
                html="<p>Your invoice is attached.</p>",
                attachments=[Attachment("INV-2027-000001.pdf", "application/pdf", pdf)],
            )
        )
        [path] = catcher.messages()
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == "<evt_1.abc@notifications.reckon>"
    assert parsed["To"] == "ada@example.com"
    assert parsed["X-Reckon-Envelope-To"] == "ada@example.com"
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert "text/plain" in parts
    assert "text/html" in parts
    attachment = parts["application/pdf"]
    assert attachment.get_filename() == "INV-2027-000001.pdf"
    assert attachment.get_payload(decode=True) == pdf


async def test_smtp_connections_are_reused_and_renewed_after_a_server_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}?starttls=off", "b@reckon.test", timeout=5)

    def mail(n: int) -> OutgoingEmail:
        return OutgoingEmail(f"<m{n}@x>", "ada@example.com", f"s{n}", "t", "<p>t</p>")

    with MailCatcher(tmp_path / "mail", port=port) as catcher:
        for n in range(3):
            await sender.send(mail(n))
        assert len(sender._idle) == 1  # one connection carried all three
    # The server went away and came back: the idle connection is dead; the next
    # message notices at MAIL (nothing sent yet) and goes over a new connection, once.
    with MailCatcher(tmp_path / "mail", port=port) as catcher:
        await sender.send(mail(3))
        subjects = sorted(
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
            for p in catcher.messages()
        )
    assert subjects == ["s0", "s1", "s2", "s3"]
    await sender.aclose()


async def test_smtp_down_is_a_temporary_failure() -> None:
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{free_port()}", "billing@reckon.test", timeout=2)
    with pytest.raises(TemporaryFailure, match="SMTP server unavailable"):
        await sender.send(OutgoingEmail("<x@y>", "ada@example.com", "s", "t", "<p>t</p>"))


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://mailer:p%40ss@mail.example.com:587?starttls=require")
    assert (plain.host, plain.port, plain.starttls, plain.implicit_tls) == (
        "mail.example.com",
        587,
        True,
        False,
    )
    assert (plain.username, plain.password) == ("mailer", "p@ss")
    tls = parse_smtp_url("smtps://mail.example.com")
    assert (tls.port, tls.implicit_tls, tls.starttls) == (465, True, False)
    assert parse_smtp_url("smtp://localhost").starttls is None  # when offered
    with pytest.raises(ValueError, match="scheme"):
        parse_smtp_url("http://mail.example.com")


@pytest.fixture
async def smsc():
    simulator = await SmscSimulator().start()
    yield simulator
    await simulator.stop()


async def _receipts(gateway: SmppGateway, count: int) -> list[tuple[str, bool, str]]:
    found: list[tuple[str, bool, str]] = []
    for _ in range(100):
        found += await gateway.receipts()
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} receipts, got {found}")


async def test_smsc_receives_gsm7_ucs2_and_concatenated_parts(smsc: SmscSimulator) -> None:
    gateway = SmppGateway(smsc.url)
    try:
        [gsm_id] = await gateway.send("Reckon", "+31612345678", "Balance 4.50 EUR {low}", 7)
        [ucs_id] = await gateway.send("Reckon", "+79161234567", "Ваш баланс 4.50 EUR", 8)
        long_text = "Your invoice INV-2027-000001 is ready. " * 6  # 234 characters
        long_ids = await gateway.send("+3197010000000", "+31612345678", long_text, 9)
        assert len(long_ids) == 2
        receipts = await _receipts(gateway, 4)
    finally:
        gateway.close()

    gsm, ucs, *parts = smsc.received
    assert (gsm.source_addr, gsm.source_addr_ton, gsm.destination_addr) == (
        "Reckon",
        5,
        "31612345678",
    )
    assert gsm.data_coding == 0
    assert gsm.esm_class == 0
    assert gsm.registered_delivery == 1
    assert gsm.short_message == b"Balance 4.50 EUR \x1b(low\x1b)"
    assert ucs.data_coding == 8
    assert ucs.short_message == "Ваш баланс 4.50 EUR".encode("utf-16-be")
    assert [p.esm_class for p in parts] == [0x40, 0x40]
    assert parts[0].source_addr == "3197010000000"
    assert parts[0].source_addr_ton == 1
    decoded = [decode_part(p.short_message, p.data_coding, p.esm_class) for p in parts]
    assert [header for _, header in decoded] == [(9, 2, 1), (9, 2, 2)]
    assert "".join(text for text, _ in decoded) == long_text
    assert len(parts[0].short_message) == 6 + 153
    assert {r[0] for r in receipts} == {gsm_id, ucs_id, *long_ids}
    assert all(delivered for _, delivered, _ in receipts)


async def test_smsc_down_is_a_temporary_failure() -> None:
    gateway = SmppGateway(f"smpp://reckon:secret@127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TemporaryFailure, match="SMSC unavailable"):
        await gateway.send("Reckon", "+31612345678", "hello", 1)


def test_webhook_signatures_verify_and_tampering_or_age_is_refused() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"InvoiceIssued","data":{"invoice_id":"inv_1"}}'
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign([secret], "evt_1", now, body),
    }
    assert Webhook(secret).verify(body, headers) == {
        "type": "InvoiceIssued",
        "data": {"invoice_id": "inv_1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"inv_1", b"inv_2"), headers)
    old = now - timedelta(minutes=6)
    stale = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": sign([secret], "evt_1", old, body),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)


def test_during_a_rotation_either_secret_verifies() -> None:
    old_secret, new_secret = "whsec_" + "a" * 32, "whsec_" + "b" * 32
    body, now = b"{}", datetime.now(UTC)
    header = sign([new_secret, old_secret], "evt_2", now, body)
    headers = {
        "webhook-id": "evt_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": header,
    }
    Webhook(old_secret).verify(body, headers)
    Webhook(new_secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "c" * 32).verify(body, headers)
