"""``reckon catalog ...`` and ``reckon usage ...``: the operator's side of the rating service.

Two Typer sub-apps that the ``reckon`` command mounts:

* ``catalog check FILE``: validate a catalog document (YAML or JSON) on this machine
  with the rating domain's own parser, no suite needed (``--remote``: ask the running
  service). ``catalog apply FILE``: make it the catalog in force. Problems are printed
  as ``FILE:LINE: field: what`` either way (``suite.catalog_check`` maps field paths
  to lines). ``catalog destinations FILE`` replaces the destination prefix table.
* ``usage import FILE`` (with a progress bar), ``usage rejects``, ``usage reprocess``
  and ``usage rerate ACCOUNT``.

All but the offline check talk to the running rating service over gRPC: at
``--addr`` / ``RATING_ADDR`` with ``RECKON_SERVICE_TOKEN``, else at the address and
with the token of the suite running from ``--data-dir`` (``DATA_DIR/suite.json``).
Exit status: 0 done, 1 invalid or refused (bad document, file failed loudly), 2 the
file or the service cannot be reached, or the command was misused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.common.grpc_client import open_channel
from services.common.grpc_errors import ErrorDetails, details_of
from suite.service_token import TOKEN_ENV
from suite.state import SuiteStateError, read_state

if TYPE_CHECKING:
    from suite.catalog_check import DocumentProblem

T = TypeVar("T")

CHUNK_BYTES: Final = 1024 * 1024
ADDRESS_ENV: Final = "RATING_ADDR"

catalog_app = typer.Typer(
    help="Apply and check the rating catalog (plans, rates, destinations).",
    no_args_is_help=True,
    add_completion=False,
)
usage_app = typer.Typer(
    help="Import usage files (CDR/EDR), inspect and re-process rejects, re-rate.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="RECKON_DATA_DIR",
        help="Data directory of the running suite (holds suite.json).",
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--addr",
        envvar=ADDRESS_ENV,
        help="host:port of the rating service (default: from the running suite).",
    ),
]


@dataclass(frozen=True)
class Target:
    address: str
    token: str


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def resolve_target(data_dir: Path, address: str | None) -> Target:
    """Where the rating service is and which token it wants."""
    token = os.environ.get(TOKEN_ENV, "")
    if address and token:
        return Target(address, token)
    try:
        state = read_state(data_dir)
    except SuiteStateError as exc:
        if address:
            raise _fail(f"{TOKEN_ENV} is not set and {exc}") from None
        raise _fail(
            f"{exc}; start it with `reckon up` or set {ADDRESS_ENV} and {TOKEN_ENV}"
        ) from None
    found = address or state.address_of("rating")
    if not found:
        raise _fail("the running suite has no rating service")
    try:
        return Target(found, token or state.token())
    except (SuiteStateError, OSError) as exc:
        raise _fail(str(exc)) from None


def _call(target: Target, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run one conversation with the rating service; gRPC failures end the command."""
    from reckon.rating.v1 import rating_pb2_grpc

    async def conversation() -> T:
        async with open_channel(target.address, target.token, traced=False) as channel:
            return await work(rating_pb2_grpc.RatingServiceStub(channel))

    try:
        return asyncio.run(conversation())
    except grpc.aio.AioRpcError as exc:
        details = details_of(exc)
        if details.code == grpc.StatusCode.UNAVAILABLE:
            raise _fail(
                f"rating service at {target.address} is unavailable: {details.message}"
            ) from None
        _print_error(details)
        raise typer.Exit(1) from None


def _print_error(details: ErrorDetails) -> None:
    reason = f" ({details.reason})" if details.reason else ""
    errors.print(f"[bold red]{details.code.name}{reason}:[/] {escape(details.message[:300])}")
    for violation in details.violations:
        errors.print(f"  {escape(violation.field)}: {escape(violation.description)}")


def _money(value: Any) -> str:
    if not value.currency_code:
        return "-"
    sign = "-" if value.units < 0 or value.nanos < 0 else ""
    units, nanos = abs(value.units), abs(value.nanos)
    fraction = f"{nanos:09d}".rstrip("0")
    if len(fraction) < 2:
        fraction = fraction.ljust(2, "0")
    return f"{sign}{units}.{fraction} {value.currency_code}"


# -- catalog ----------------------------------------------------------------------------


def _read_document(path: Path) -> str:
    """The document's text; a file that cannot be read is a usage error (exit 2)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"no file {path}") from None
    except UnicodeDecodeError as exc:
        raise _fail(f"{path} is not UTF-8 text (byte {exc.start})", 1) from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None


def _print_problems(source: str, problems: list[DocumentProblem]) -> None:
    errors.print(f"[bold red]{escape(source)}: {len(problems)} problem(s)[/]")
    for problem in problems:
        # Never wrapped: editors and scripts read FILE:LINE: from the start of each line.
        errors.print(f"  {escape(problem.render(source))}", soft_wrap=True)


def _plans_table(rows: list[tuple[str, str, int, list[str]]]) -> Table:
    table = Table(title="Plans", title_justify="left")
    for column in ("plan", "currency", "versions", "services"):
        table.add_column(column)
    for code, currency, versions, services in rows:
        table.add_row(code, currency, str(versions), ", ".join(services))
    return table


def _send_catalog(path: Path, data_dir: Path, address: str | None, *, validate_only: bool) -> None:
    """Apply (or with ``validate_only`` check) ``path`` through the running service."""
    from reckon.rating.v1 import rating_pb2
    from suite.catalog_check import DocumentProblem, locate, looks_like_json

    document = _read_document(path)
    json_document = looks_like_json(document, path.name)
    target = resolve_target(data_dir, address)
    fmt = rating_pb2.CATALOG_FORMAT_JSON if json_document else rating_pb2.CATALOG_FORMAT_YAML

    async def work(stub: Any) -> Any:
        try:
            return await stub.ApplyCatalog(
                rating_pb2.ApplyCatalogRequest(
                    document=document,
                    format=fmt,
                    validate_only=validate_only,
                    source_name=path.name,
                )
            )
        except grpc.aio.AioRpcError as exc:
            details = details_of(exc)
            if details.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            # The service names fields by document path; this file's lines locate them.
            problems = locate(details.violations, document, json_document=json_document)
            _print_problems(str(path), problems or [DocumentProblem("", None, details.message)])
            raise typer.Exit(1) from None

    reply = _call(target, work)
    console.print(
        _plans_table(
            [
                (
                    plan.code,
                    plan.currency,
                    len(plan.versions),
                    sorted({s for v in plan.versions for s in v.services}),
                )
                for plan in reply.plans
            ]
        )
    )
    if validate_only:
        console.print(
            f"[green]{escape(str(path))} is valid[/] (checked by the rating service at "
            f"{target.address}): {len(reply.plans)} plan(s), "
            f"{len(reply.price_packages)} price package(s), "
            f"{reply.prefix_count} destination prefixes"
        )
    elif reply.changed:
        console.print(f"[green]applied[/] {escape(str(path))} as catalog revision {reply.revision}")
    else:
        console.print(
            f"unchanged: {escape(str(path))} is already catalog revision {reply.revision}"
        )


def _check_offline(path: Path, destinations: Path | None, header: bool) -> None:
    """Validate ``path`` with the domain's parser on this machine; no service involved."""
    # Loaded here: the domain is not needed by the other commands of `reckon`.
    from suite.catalog_check import (
        DestinationsError,
        check_document,
        load_destinations,
        looks_like_json,
    )

    document = _read_document(path)
    table = None
    if destinations is not None:
        try:
            table = load_destinations(destinations, has_header=header)
        except FileNotFoundError:
            raise _fail(f"no file {destinations}") from None
        except UnicodeDecodeError as exc:
            raise _fail(f"{destinations} is not UTF-8 text (byte {exc.start})", 1) from None
        except OSError as exc:
            raise _fail(f"cannot read {destinations}: {exc.strerror or exc}") from None
        except DestinationsError as exc:
            _print_problems(str(destinations), exc.problems)
            raise typer.Exit(1) from None
    result = check_document(
        document, json_document=looks_like_json(document, path.name), destinations=table
    )
    if result.catalog is None:
        _print_problems(str(path), result.problems)
        raise typer.Exit(1)
    catalog = result.catalog
    console.print(
        _plans_table(
            [
                (
                    plan.code,
                    plan.currency,
                    len(plan.versions),
                    sorted({rate.service for v in plan.versions for rate in v.rates}),
                )
                for plan in sorted(catalog.plans, key=lambda p: p.code)
            ]
        )
    )
    prefixes = f"{len(catalog.destinations)} destination prefixes" + (
        f" (with {destinations.name})" if destinations is not None else ""
    )
    console.print(
        f"[green]{escape(str(path))} is valid[/]: {len(catalog.plans)} plan(s), "
        f"{len(catalog.packages)} price package(s), {prefixes}"
    )


@catalog_app.command("apply")
def catalog_apply(
    file: Annotated[Path, typer.Argument(help="Catalog document (YAML or JSON).")],
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Make FILE the catalog in force (a new revision); problems are listed by line."""
    _send_catalog(file, data_dir, addr, validate_only=False)


@catalog_app.command("check")
def catalog_check(
    file: Annotated[Path, typer.Argument(help="Catalog document (YAML or JSON).")],
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Ask the running rating service instead (checks against the prefix table "
            "in force).",
        ),
    ] = False,
    destinations: Annotated[
        Path | None,
        typer.Option(
            "--destinations",
            help="Offline: a prefix CSV (prefix,destination) the rates may refer to.",
        ),
    ] = None,
    header: Annotated[
        bool, typer.Option(help="Offline: the --destinations CSV starts with a header.")
    ] = False,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Check FILE without applying it, on this machine (no suite needed).

    Every problem is listed as FILE:LINE: field: what. Exit 0 valid, 1 invalid,
    2 the file (or, with --remote, the service) cannot be reached.
    """
    if remote:
        if destinations is not None:
            raise _fail("--destinations is for offline checks; --remote uses the table in force")
        _send_catalog(file, data_dir, addr, validate_only=True)
    else:
        _check_offline(file, destinations, header)


async def _chunks(
    path: Path,
    first: Callable[[bytes], Any],
    rest: Callable[[bytes], Any],
    advance: Callable[[int], None],
) -> AsyncIterator[Any]:
    with path.open("rb") as stream:
        chunk = stream.read(CHUNK_BYTES)
        yield first(chunk)
        advance(len(chunk))
        while True:
            chunk = await asyncio.to_thread(stream.read, CHUNK_BYTES)
            if not chunk:
                return
            yield rest(chunk)
            advance(len(chunk))


@catalog_app.command("destinations")
def catalog_destinations(
    file: Annotated[Path, typer.Argument(help="CSV of prefix,destination lines.")],
    header: Annotated[bool, typer.Option(help="The first line is a header.")] = False,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Replace the destination prefix table with FILE."""
    from reckon.rating.v1 import rating_pb2

    if not file.is_file():
        raise _fail(f"no file {file}")
    target = resolve_target(data_dir, addr)

    async def work(stub: Any) -> Any:
        return await stub.ImportDestinations(
            _chunks(
                file,
                lambda data: rating_pb2.ImportDestinationsRequest(
                    file_name=file.name, has_header=header, chunk=data
                ),
                lambda data: rating_pb2.ImportDestinationsRequest(chunk=data),
                lambda _: None,
            )
        )

    reply = _call(target, work)
    console.print(
        f"[green]imported[/] {reply.prefix_count} prefixes of "
        f"{reply.destination_count} destinations as catalog revision {reply.revision}"
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


__all__ = ["catalog_app", "resolve_target", "usage_app"]

# ``usage release`` and ``usage rated`` (and the import's progress) live in their own module.
from suite import usage_cli as _usage_cli  # noqa: E402, F401
