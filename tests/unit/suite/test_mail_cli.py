"""``reckon mail list|show`` over what the real mail catcher wrote."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from typer.testing import CliRunner

from suite.cli import app
from suite.mail_catcher import MailCatcher, mail_dir


def test_list_and_show_what_the_catcher_received(tmp_path: Path) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "b@reckon.test", "ada@example.com", "Hi"
    message.set_content("Your invoice is attached.")
    message.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename="i.pdf")
    with MailCatcher(mail_dir(tmp_path)) as catcher, smtplib.SMTP(catcher.host, catcher.port) as s:
        s.send_message(message)
    runner = CliRunner()
    listed = runner.invoke(app, ["mail", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "ada@example.com" in listed.output
    assert "i.pdf" in listed.output
    out = tmp_path / "out"
    shown = runner.invoke(
        app, ["mail", "show", "1", "--data-dir", str(tmp_path), "--save-attachments", str(out)]
    )
    assert shown.exit_code == 0, shown.output
    assert "Your invoice is attached." in shown.output
    assert (out / "i.pdf").read_bytes() == b"%PDF-1.4 x"
    missing = runner.invoke(app, ["mail", "show", "2", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1
