"""``reckon usage import`` progress, ``reckon usage rated`` and ``reckon usage release``.

The import's progress (issue 9 item 11) follows the records, not the upload: the
bytes go up first (a bar of bytes sent), then the service rates the spooled file
while this command asks it, twice a second, how far the import with the file's
SHA-256 got (``ListImportFiles(checksum=...)``): records rated, rejected, and the
rate in records a second. The bar's total is the file's line count.

``usage rated`` lists rated records with filters (account, file, service, period)
as a table, or every page of them as CSV (``--csv FILE``, ``-`` for stdout).
``usage release`` publishes a held (failed) import's rated records as they are.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Final, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from suite.rating_cli import _instant, usage_app
from suite.rating_client import (
    CHUNK_BYTES,
    Address,
    DataDir,
    _call,
    _fail,
    _money,
    console,
    resolve_target,
)

_POLL_SECONDS: Final = 0.5
_PAGE: Final = 1000


async def import_with_progress(stub: Any, file: Path, size: int, options: Any, out: Console) -> Any:
    """Upload ``file`` and show the rating's progress until the service answers."""
    from reckon.rating.v1 import rating_pb2

    digest = hashlib.sha256()
    state = {"lines": 0, "sent": False}
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )
    task = progress.add_task(f"sending {file.name}", total=size or 1, detail="")

    async def requests() -> AsyncIterator[Any]:
        sent = 0
        with file.open("rb") as stream:
            first = True
            while True:
                chunk = await asyncio.to_thread(stream.read, CHUNK_BYTES)
                if not chunk and not first:
                    break
                digest.update(chunk)
                state["lines"] = int(state["lines"]) + chunk.count(b"\n")
                sent += len(chunk)
                yield (
                    rating_pb2.ImportUsageRequest(file_name=file.name, options=options, chunk=chunk)
                    if first
                    else rating_pb2.ImportUsageRequest(chunk=chunk)
                )
                first = False
                progress.update(task, completed=sent, detail=f"{sent:,} of {size:,} bytes")
        state["sent"] = True

    with progress:
        call = asyncio.ensure_future(stub.ImportUsage(requests()))
        started: tuple[float, int] | None = None
        while not call.done():
            await asyncio.wait({call}, timeout=_POLL_SECONDS)
            if call.done() or not state["sent"]:
                continue
            listed = await stub.ListImportFiles(
                rating_pb2.ListImportFilesRequest(checksum=digest.hexdigest(), page_size=5)
            )
            running = [f for f in listed.files if f.status == rating_pb2.IMPORT_STATUS_IMPORTING]
            if not running:
                continue
            now, done = time.monotonic(), running[0].records + running[0].skipped
            started = started or (now, done)
            elapsed = now - started[0]
            rate = (done - started[1]) / elapsed if elapsed > 0 else 0.0
            progress.update(
                task,
                description=f"rating {file.name}",
                total=max(int(state["lines"]), done, 1),
                completed=done,
                detail=f"rated {running[0].rated:,}  rejected {running[0].rejected:,}  "
                f"{rate:,.0f} records/s",
            )
        return call.result()


def print_held(imported: Any, out: Console) -> None:
    """Say plainly what a failed import did and did not do, and what to do next."""
    if not imported.held:
        if imported.failed_loudly and not imported.rated:
            out.print("  nothing was rated, so nothing was charged")
        return
    out.print(
        f"  [bold]nothing was charged:[/] its {imported.rated:,} rated record(s) are held back "
        "(not published to charging or invoicing, not listed as rated usage)."
    )
    out.print(
        f"  fix the cause, then `reckon usage reprocess --file-id {imported.file_id}` "
        "(the file is released once its open rejects are within the threshold), or "
        f"release it as it is with `reckon usage release {imported.file_id}`."
    )


@usage_app.command("release")
def usage_release(
    file_id: Annotated[str, typer.Argument(help="The held (failed) import to release.")],
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Publish a held import's rated records as they are: they are charged from now on."""
    from reckon.rating.v1 import rating_pb2

    target = resolve_target(data_dir, addr)

    async def work(stub: Any) -> Any:
        return await stub.ReleaseImportFile(rating_pb2.ReleaseImportFileRequest(file_id=file_id))

    released = _call(target, work).file
    console.print(
        f"[green]released[/] {released.file_name} ({released.file_id}): "
        f"{released.rated:,} rated record(s) published"
    )


_CSV_COLUMNS: Final = (
    "record_id",
    "account_id",
    "service",
    "destination",
    "event_time",
    "quantity",
    "unit",
    "net",
    "tax",
    "gross",
    "currency",
    "plan_code",
    "plan_version",
    "file_id",
    "line",
)


def _amount(value: Any) -> str:
    """A Money as a plain decimal (no currency), exact."""
    text = _money(value)
    return text.rsplit(" ", 1)[0] if value.currency_code else ""


def _unit(usage: Any) -> str:
    from reckon.rating.v1 import rating_pb2

    name = rating_pb2.QuantityUnit.Name(usage.quantity.unit)
    return name.removeprefix("QUANTITY_UNIT_").lower()


def _csv_row(usage: Any) -> list[str]:
    return [
        usage.record_id,
        usage.account_id,
        usage.service,
        usage.destination,
        usage.event_time.ToDatetime().isoformat() + "Z",
        str(usage.quantity.value),
        _unit(usage),
        _amount(usage.net),
        _amount(usage.tax),
        _amount(usage.amount),
        usage.amount.currency_code,
        usage.plan_code,
        str(usage.charge.plan_version),
        usage.file_id,
        str(usage.line),
    ]


@usage_app.command("rated")
def usage_rated(
    account_id: Annotated[str, typer.Option("--account", help="Only this account.")] = "",
    file_id: Annotated[str, typer.Option(help="Only records of this import.")] = "",
    service: Annotated[str, typer.Option(help="Only this service (voice, sms ...).")] = "",
    period_from: Annotated[
        str, typer.Option("--from", help="Events from (ISO 8601, inclusive).")
    ] = "",
    period_to: Annotated[str, typer.Option("--to", help="Events before (ISO 8601).")] = "",
    include_held: Annotated[
        bool, typer.Option(help="Include records of held (failed) imports.")
    ] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="At most this many records.")
    ] = 50,
    csv_path: Annotated[
        str, typer.Option("--csv", help="Write every matching record as CSV to FILE ('-': stdout).")
    ] = "",
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """List rated usage records (a table), or export them as CSV."""
    from google.protobuf import timestamp_pb2

    from reckon.rating.v1 import rating_pb2

    request = rating_pb2.ListRatedUsageRequest(
        account_id=account_id, file_id=file_id, service=service, include_held=include_held
    )
    for value, option, field in (
        (period_from, "--from", "period_start"),
        (period_to, "--to", "period_end"),
    ):
        if value:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(_instant(value, option))
            getattr(request, field).CopyFrom(stamp)
    target = resolve_target(data_dir, addr)

    async def work(stub: Any) -> tuple[list[Any], int]:
        shown: list[Any] = []
        written = 0
        sink = _open_csv(csv_path) if csv_path else None
        try:
            token = ""
            while True:
                request.page_size = _PAGE if sink is not None else min(_PAGE, limit - len(shown))
                request.page_token = token
                page = await stub.ListRatedUsage(request)
                if sink is not None:  # written page by page: constant memory
                    sink[1].writerows(_csv_row(u) for u in page.rated_usage)
                    written += len(page.rated_usage)
                else:
                    shown.extend(page.rated_usage)
                token = page.next_page_token
                if not token or (sink is None and len(shown) >= limit):
                    break
        finally:
            if sink is not None and sink[0] is not sys.stdout:
                sink[0].close()
        return shown, written

    rows, written = _call(target, work)
    if csv_path:
        if csv_path != "-":
            console.print(f"wrote {written:,} rated record(s) to {csv_path}")
        return
    table = Table(title=f"Rated usage ({len(rows)})", title_justify="left")
    for name in ("record", "account", "service", "destination", "event time", "quantity"):
        table.add_column(name)
    table.add_column("gross", justify="right")
    table.add_column("plan")
    for usage in rows:
        table.add_row(
            usage.record_id,
            usage.account_id,
            usage.service,
            usage.destination,
            usage.event_time.ToDatetime().isoformat(timespec="seconds"),
            f"{usage.quantity.value} {_unit(usage)}",
            _money(usage.amount),
            f"{usage.plan_code} v{usage.charge.plan_version}",
        )
    console.print(table)


def _open_csv(path: str) -> tuple[TextIO, Any]:
    """(stream, csv writer with the header written)."""
    if path == "-":
        stream: TextIO = sys.stdout
    else:
        try:
            stream = Path(path).open("w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise _fail(f"cannot write {path}: {exc.strerror}") from None
    writer = csv.writer(stream)
    writer.writerow(_CSV_COLUMNS)
    return stream, writer


__all__ = ["import_with_progress", "print_held", "usage_rated", "usage_release"]
