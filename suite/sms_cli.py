"""``reckon sms list|show``: the SMS the local SMSC simulator received.

The simulator (``suite.smsc``, started by ``reckon up``) keeps every PDU it accepted
as a JSON file in ``DATA_DIR/sms``. ``list`` joins the parts of concatenated
messages and shows one line per SMS, newest last, with a number; ``show N`` prints
one: sender, destination, encoding, its parts with their SMSC ids, and the whole
text. No suite needs to be running: only the files are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suite.smsc import sms_dir

sms_app = typer.Typer(
    help="Browse the SMS the local SMSC simulator received (DATA_DIR/sms).",
    no_args_is_help=True,
)
console = Console(highlight=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="The suite's data directory."),
]


@dataclass
class Sms:
    """One SMS as the handset would show it: the parts of a concatenated message joined."""

    received_at: str
    source: str
    destination: str
    encoding: str
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        ordered = sorted(self.parts, key=lambda p: (p["part"] or [0, 0, 0])[2])
        return "".join(str(p["text"]) for p in ordered)


def received_sms(data_dir: Path) -> list[Sms]:
    """Every SMS in arrival order, parts joined by (sender, destination, reference)."""
    found: list[Sms] = []
    open_parts: dict[tuple[str, str, int], Sms] = {}
    for path in sorted(sms_dir(data_dir).glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        part = record.get("part")
        key = (record["source_addr"], record["destination_addr"], int(part[0])) if part else None
        sms = open_parts.get(key) if key else None
        if sms is None:
            sms = Sms(
                received_at=str(record["received_at"])[:19].replace("T", " "),
                source=record["source_addr"],
                destination=record["destination_addr"],
                encoding=record["encoding"],
            )
            found.append(sms)
            if key:
                open_parts[key] = sms
        sms.parts.append(record)
        if key and len(sms.parts) >= int(part[1]):
            del open_parts[key]  # complete: a later message may reuse the reference
    return found


@sms_app.command("list")
def list_sms(data_dir: DataDir = Path("data")) -> None:
    """List the received SMS: number, time, from, to, encoding, parts, text."""
    messages = received_sms(data_dir)
    if not messages:
        console.print(f"no SMS in {sms_dir(data_dir)}")
        return
    table = Table("#", "received (UTC)", "from", "to", "encoding", "parts", "text")
    for number, sms in enumerate(messages, start=1):
        text = sms.text
        table.add_row(
            str(number),
            sms.received_at,
            escape(sms.source),
            escape(sms.destination),
            sms.encoding,
            str(len(sms.parts)),
            escape(text if len(text) <= 60 else text[:59] + "…"),
        )
    console.print(table)


@sms_app.command("show")
def show_sms(
    number: Annotated[int, typer.Argument(help="The number `reckon sms list` shows.")],
    data_dir: DataDir = Path("data"),
) -> None:
    """Show one SMS: sender, destination, encoding, its parts and the whole text."""
    messages = received_sms(data_dir)
    if not 1 <= number <= len(messages):
        console.print(f"no SMS number {number}; there are {len(messages)}")
        raise typer.Exit(1)
    sms = messages[number - 1]
    console.print(f"[bold]From:[/bold] {escape(sms.source)}")
    console.print(f"[bold]To:[/bold] {escape(sms.destination)}")
    console.print(f"[bold]Received:[/bold] {sms.received_at} UTC")
    console.print(f"[bold]Encoding:[/bold] {sms.encoding}, {len(sms.parts)} part(s)")
    for part in sms.parts:
        where = f" part {part['part'][2]}/{part['part'][1]}" if part.get("part") else ""
        console.print(f"[dim]{part['smsc_id']}{where}: {len(part['text'])} characters[/dim]")
    console.print()
    console.print(escape(sms.text))
