"""``reckon mail list|show``: the messages the local mail catcher received.

The catcher (``suite.mail_catcher``, started by ``reckon up``) keeps every e-mail
as a ``.eml`` file in ``DATA_DIR/mail``. ``list`` shows them newest last with a
number; ``show N`` prints one (headers, the plain-text part, attachments with
their size) and ``--save-attachments DIR`` writes its attachments to DIR, e.g.
to open the invoice PDF. No suite needs to be running: only the files are read.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suite.mail_catcher import mail_dir

mail_app = typer.Typer(
    help="Browse the e-mails the local mail catcher received (DATA_DIR/mail).",
    no_args_is_help=True,
)
console = Console(highlight=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="The suite's data directory."),
]


def _files(data_dir: Path) -> list[Path]:
    return sorted(mail_dir(data_dir).glob("*.eml"))


def _parse(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _attachments(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append((part.get_filename() or "attachment", part.get_content_type(), data))
    return found


@mail_app.command("list")
def list_mail(data_dir: DataDir = Path("data")) -> None:
    """List the received e-mails: number, time, recipient, subject, attachments."""
    files = _files(data_dir)
    if not files:
        console.print(f"no e-mails in {mail_dir(data_dir)}")
        return
    table = Table("#", "received (UTC)", "to", "subject", "attachments")
    for number, path in enumerate(files, start=1):
        message = _parse(path)
        stamp = path.name.split("-")[0]
        received = (
            f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
        )
        names = ", ".join(name for name, _, _ in _attachments(message))
        table.add_row(
            str(number),
            received,
            escape(str(message["To"])),
            escape(str(message["Subject"])),
            names,
        )
    console.print(table)


@mail_app.command("show")
def show_mail(
    number: Annotated[int, typer.Argument(help="The number `reckon mail list` shows.")],
    data_dir: DataDir = Path("data"),
    save_attachments: Annotated[
        Path | None, typer.Option("--save-attachments", help="Write the attachments here.")
    ] = None,
) -> None:
    """Show one e-mail: headers, its text, and its attachments."""
    files = _files(data_dir)
    if not 1 <= number <= len(files):
        console.print(f"no e-mail number {number}; there are {len(files)}")
        raise typer.Exit(1)
    path = files[number - 1]
    message = _parse(path)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        console.print(f"[bold]{name}:[/bold] {escape(str(message[name] or '').strip())}")
    body = message.get_body(("plain",))
    console.print()
    console.print(escape(body.get_content() if body is not None else "(no text part)"))
    for name, media_type, data in _attachments(message):
        console.print(f"[bold]attachment:[/bold] {escape(name)} ({media_type}, {len(data)} bytes)")
        if save_attachments is not None:
            save_attachments.mkdir(parents=True, exist_ok=True)
            (save_attachments / Path(name).name).write_bytes(data)
    console.print(f"[dim]{path}[/dim]")
