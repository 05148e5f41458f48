"""``reckon catalog check|apply|destinations``: the catalog side of the rating CLI.

``catalog check FILE`` validates a catalog document (YAML or JSON) on this machine
with the rating domain's own parser, no suite needed (``--remote``: ask the
running service). ``catalog apply FILE`` makes it the catalog in force. Problems
are printed as ``FILE:LINE: field: what`` either way (``suite.catalog_check`` maps
field paths to lines). ``catalog destinations FILE`` replaces the destination
prefix table. Mounted by ``reckon`` through ``suite.rating_cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import grpc
import typer
from rich.markup import escape
from rich.table import Table

from services.common.grpc_errors import details_of

if TYPE_CHECKING:
    from suite.catalog_check import DocumentProblem

from suite.rating_client import (
    Address,
    DataDir,
    _call,
    _chunks,
    _fail,
    console,
    errors,
    resolve_target,
)

catalog_app = typer.Typer(
    help="Apply and check the rating catalog (plans, rates, destinations).",
    no_args_is_help=True,
    add_completion=False,
)

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
