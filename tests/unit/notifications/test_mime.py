"""The one-pass MIME builder gives what the ``email`` package reads back as sent."""

from __future__ import annotations

import email
import email.policy
import os

import pytest

from services.notifications.adapters.smtp import build_mime, message_bytes
from services.notifications.service_layer.ports import Attachment, OutgoingEmail


def _parsed(data: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


@pytest.mark.parametrize(
    ("subject", "file_name"),
    [
        ("Invoice INV-2027-000001 from Reckon", "INV-2027-000001.pdf"),
        ("Низкий баланс: 1.50 EUR — " + "очень длинная тема " * 4, "счёт 1.pdf"),
        ('Factura "2027" — ¿pagada?', 'odd "name".xml'),
    ],
)
def test_one_pass_bytes_read_back_like_the_email_package_builds_them(
    subject: str, file_name: str
) -> None:
    pdf = os.urandom(50_000)
    outgoing = OutgoingEmail(
        message_id="<evt_1.abc@notifications.reckon>",
        to="ada@example.com",
        subject=subject,
        text="Dear Ada,\n.\nyour invoice is attached. Ünïcode ok.\n",
        html="<p>Dear Ada &lt;3</p>",
        attachments=[Attachment(file_name, "application/pdf", pdf)],
        headers={"X-Reckon-Event-Id": "evt_1"},
    )
    fast = _parsed(message_bytes(outgoing, "Reckon Bïlling <billing@reckon.test>"))
    reference = _parsed(bytes(build_mime(outgoing, "Reckon Bïlling <billing@reckon.test>")))
    for name in ("From", "To", "Subject", "Message-ID", "X-Reckon-Event-Id"):
        assert str(fast[name]) == str(reference[name]), name
    assert b"\n" not in message_bytes(outgoing, "b@x").replace(b"\r\n", b"")  # CRLF only
    for kind in ("plain", "html"):
        fast_body, reference_body = fast.get_body((kind,)), reference.get_body((kind,))
        assert fast_body is not None
        assert reference_body is not None
        # The email package ends a part that has no final newline with one.
        assert fast_body.get_content().rstrip("\n") == reference_body.get_content().rstrip("\n")
    [fast_pdf] = fast.iter_attachments()
    [reference_pdf] = reference.iter_attachments()
    assert fast_pdf.get_filename() == reference_pdf.get_filename() == file_name
    assert fast_pdf.get_payload(decode=True) == reference_pdf.get_payload(decode=True) == pdf


def test_without_attachments_it_is_one_alternative() -> None:
    outgoing = OutgoingEmail("<m@x>", "ada@example.com", "s", "t", "<p>t</p>")
    parsed = _parsed(message_bytes(outgoing, "b@x"))
    assert parsed.get_content_type() == "multipart/alternative"
    assert list(parsed.iter_attachments()) == []


def test_ascii_text_stays_readable_in_the_stored_message() -> None:
    # Anyone searching a mailbox (the demo looks for the invoice number) sees the text.
    outgoing = OutgoingEmail(
        "<m@x>", "ada@example.com", "Payment received", "Invoice INV-2027-000001 is paid.", "<p/>"
    )
    assert b"Invoice INV-2027-000001 is paid." in message_bytes(outgoing, "b@x")
