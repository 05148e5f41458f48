"""``reckon catalog ...`` and ``reckon usage ...``: the operator's side of the rating service.

Two Typer sub-apps that the ``reckon`` command mounts:

* ``catalog check FILE``: validate a catalog document (YAML or JSON) on this machine
  with the rating domain's own parser, no suite needed (``--remote``: ask the running
  service). ``catalog apply FILE``: make it the catalog in force. Problems are printed
  as ``FILE:LINE: field: what`` either way (``suite.catalog_check`` maps field paths
  to lines). ``catalog destinations FILE`` replaces the destination prefix table.
* ``usage import FILE`` (with a progress bar), ``usage rejects``, ``usage reprocess``
  and ``usage rerate ACCOUNT``.

The catalog commands are in ``suite.catalog_cli``, what both share (finding and
calling the service) in ``suite.rating_client``; ``usage release``, ``usage
rated`` and the import's progress in ``suite.usage_cli``.

All but the offline check talk to the running rating service over gRPC: at
``--addr`` / ``RATING_ADDR`` with ``RECKON_SERVICE_TOKEN``, else at the address and
with the token of the suite running from ``--data-dir`` (``DATA_DIR/suite.json``).
Exit status: 0 done, 1 invalid or refused (bad document, file failed loudly), 2 the
file or the service cannot be reached, or the command was misused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from suite.catalog_cli import catalog_app, catalog_apply, catalog_check, catalog_destinations
from suite.rating_client import (
    ADDRESS_ENV,
    CHUNK_BYTES,
    Address,
    DataDir,
    Target,
    _call,
    _fail,
    _money,
    _print_error,
    console,
    errors,
    resolve_target,
)

usage_app = typer.Typer(
    help="Import usage files (CDR/EDR), inspect and re-process rejects, re-rate.",
    no_args_is_help=True,
    add_completion=False,
)

# -- usage ------------------------------------------------------------------------------


def _columns(values: list[str]) -> dict[str, str]:
    mapping = {}
    for value in values:
        field, sep, column = value.partition("=")
        if not sep or not field or not column:
            raise _fail(f"--column expects FIELD=COLUMN, got {value!r}")
        mapping[field.strip()] = column.strip()
    return mapping


@usage_app.command("import")
def usage_import(
    file: Annotated[Path, typer.Argument(help="Usage file: CSV or JSON lines.")],
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file name).")
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="Column layout: reckon (header with record_id, account_id, ...) or asterisk "
            "(Master.csv)."
        ),
    ] = "",
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="FIELD=COLUMN (header name or 1-based number); repeatable."),
    ] = None,
    header: Annotated[
        bool | None,
        typer.Option("--header/--no-header", help="Whether the CSV starts with a header line."),
    ] = None,
    default_service: Annotated[str, typer.Option(help="Service of records naming none.")] = "",
    time_zone: Annotated[
        str, typer.Option(help="IANA zone of timestamps written without offset.")
    ] = "",
    reject_threshold: Annotated[
        str,
        typer.Option(
            help="Percent of rejects above which the file fails (default: the service's)."
        ),
    ] = "",
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Rate every record of FILE; rejects are kept with their reason and line."""
    from reckon.rating.v1 import rating_pb2

    if not file.is_file():
        raise _fail(f"no file {file}")
    formats = {"csv": rating_pb2.USAGE_FILE_FORMAT_CSV, "jsonl": rating_pb2.USAGE_FILE_FORMAT_JSONL}
    if file_format is not None and file_format.lower() not in formats:
        raise _fail("--format must be csv or jsonl")
    options = rating_pb2.UsageFileOptions(
        format=formats.get((file_format or "").lower(), rating_pb2.USAGE_FILE_FORMAT_UNSPECIFIED),
        preset=preset,
        columns=_columns(column or []),
        has_header=bool(header),
        has_header_set=header is not None,
        default_service=default_service,
        source_time_zone=time_zone,
        reject_threshold_percent=reject_threshold,
    )
    target = resolve_target(data_dir, addr)
    size = file.stat().st_size

    async def work(stub: Any) -> Any:
        from suite.usage_cli import import_with_progress

        return await import_with_progress(stub, file, size, options, console)

    imported = _call(target, work).file
    _print_import(imported)
    if imported.status == rating_pb2.IMPORT_STATUS_FAILED:
        raise typer.Exit(1)


def _print_import(imported: Any) -> None:
    from reckon.rating.v1 import rating_pb2

    status = rating_pb2.ImportStatus.Name(imported.status).removeprefix("IMPORT_STATUS_")
    colour = "red" if imported.status == rating_pb2.IMPORT_STATUS_FAILED else "green"
    console.print(f"[bold]{imported.file_name}[/] ({imported.file_id}): [{colour}]{status}[/]")
    if imported.duplicate_of:
        console.print(f"  already imported as {imported.duplicate_of}: nothing rated twice")
    console.print(
        f"  records {imported.records}  rated {imported.rated}  "
        f"rejected {imported.rejected}  skipped {imported.skipped}"
    )
    for total in imported.rated_totals:
        console.print(f"  rated total {_money(total)}")
    if imported.rejects_by_reason:
        table = Table(title="Rejects by reason", title_justify="left")
        table.add_column("reason")
        table.add_column("records", justify="right")
        for count in imported.rejects_by_reason:
            table.add_row(count.reason, str(count.count))
        console.print(table)
    if imported.failed_loudly:
        from suite.usage_cli import print_held

        errors.print(f"[bold red]FAILED:[/] {imported.failure_message}")
        print_held(imported, errors)


_STATUSES: Final = ("open", "reprocessed", "discarded", "all")


@usage_app.command("rejects")
def usage_rejects(
    file_id: Annotated[str, typer.Option(help="Only rejects of this import.")] = "",
    reason: Annotated[str, typer.Option(help="Only rejects with this reason.")] = "",
    status: Annotated[str, typer.Option(help="open, reprocessed, discarded or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """List rejected records with their reason, file and line."""
    from reckon.rating.v1 import rating_pb2

    if status not in _STATUSES:
        raise _fail(f"--status must be one of {', '.join(_STATUSES)}")
    wanted = {
        "open": rating_pb2.REJECT_STATUS_OPEN,
        "reprocessed": rating_pb2.REJECT_STATUS_REPROCESSED,
        "discarded": rating_pb2.REJECT_STATUS_DISCARDED,
        "all": rating_pb2.REJECT_STATUS_UNSPECIFIED,
    }[status]
    target = resolve_target(data_dir, addr)

    async def work(stub: Any) -> tuple[list[Any], list[Any]]:
        found: list[Any] = []
        token = ""
        counts: list[Any] = []
        while len(found) < limit:
            reply = await stub.ListRejects(
                rating_pb2.ListRejectsRequest(
                    page_size=min(limit - len(found), 1000),
                    page_token=token,
                    file_id=file_id,
                    reason=reason,
                    status=wanted,
                )
            )
            found.extend(reply.rejects)
            counts = list(reply.counts)
            token = reply.next_page_token
            if not token:
                break
        return found, counts

    rejects, counts = _call(target, work)
    table = Table(title=f"Rejects ({status})", title_justify="left")
    for name in ("id", "file", "line", "record", "reason", "message"):
        table.add_column(name, overflow="fold")
    for reject in rejects:
        table.add_row(
            reject.reject_id,
            reject.file_name,
            str(reject.line),
            reject.record_id,
            reject.reason,
            reject.message,
        )
    console.print(table)
    console.print("  ".join(f"{c.reason}: {c.count}" for c in counts) or "no rejects")


@usage_app.command("reprocess")
def usage_reprocess(
    file_id: Annotated[str, typer.Option(help="Only rejects of this import.")] = "",
    reason: Annotated[str, typer.Option(help="Only rejects with this reason.")] = "",
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Rate open rejects again, once their cause (account, tariff) is fixed."""
    from reckon.rating.v1 import rating_pb2

    target = resolve_target(data_dir, addr)

    async def work(stub: Any) -> Any:
        return await stub.ReprocessRejects(
            rating_pb2.ReprocessRejectsRequest(file_id=file_id, reason=reason)
        )

    reply = _call(target, work)
    console.print(
        f"tried {reply.attempted}: rated {reply.rated}, discarded {reply.discarded} "
        f"(rated since), still rejected {reply.still_rejected}"
    )
    for count in reply.remaining_by_reason:
        console.print(f"  {count.reason}: {count.count}")


def _instant(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option} expects an ISO 8601 date or date-time, got {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@usage_app.command("rerate")
def usage_rerate(
    account_id: Annotated[str, typer.Argument(help="Account whose usage to re-rate.")],
    period_from: Annotated[str, typer.Option("--from", help="Start (ISO 8601, inclusive).")],
    period_to: Annotated[str, typer.Option("--to", help="End (ISO 8601, exclusive).")],
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Rate an account's usage of a period again with the catalog in force now."""
    from google.protobuf import timestamp_pb2

    from reckon.rating.v1 import rating_pb2

    start, end = _instant(period_from, "--from"), _instant(period_to, "--to")
    target = resolve_target(data_dir, addr)
    start_stamp, end_stamp = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start_stamp.FromDatetime(start.astimezone(UTC))
    end_stamp.FromDatetime(end.astimezone(UTC))

    async def work(stub: Any) -> Any:
        return await stub.Rerate(
            rating_pb2.RerateRequest(
                account_id=account_id, period_start=start_stamp, period_end=end_stamp
            )
        )

    reply = _call(target, work)
    console.print(
        f"re-rated {reply.records} record(s) with catalog revision "
        f"{reply.catalog_revision}: {reply.changed} changed, {reply.failed} failed"
    )
    for total in reply.totals:
        console.print(
            f"  {_money(total.old_total)} -> {_money(total.new_total)} "
            f"(difference {_money(total.difference)})"
        )


# What other modules import from here: the CLI's own names and, re-exported from
# catalog_cli and rating_client, what they imported before the split (payments_cli).
__all__ = [
    "ADDRESS_ENV",
    "CHUNK_BYTES",
    "Address",
    "DataDir",
    "Target",
    "_call",
    "_fail",
    "_instant",
    "_money",
    "_print_error",
    "catalog_app",
    "catalog_apply",
    "catalog_check",
    "catalog_destinations",
    "console",
    "resolve_target",
    "usage_app",
]

# ``usage release`` and ``usage rated`` (and the import's progress) live in their own module.
from suite import usage_cli as _usage_cli  # noqa: E402, F401
