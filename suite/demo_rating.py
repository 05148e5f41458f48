"""The rating part of ``reckon demo`` (issue 3): the sample catalog, the conference
call's CDRs imported and rated with the customer's own prices, the reject."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.rating.v1 import rating_pb2
from services.common.grpc_errors import details_of
from services.common.proto_convert import (
    timestamp_from_proto,
    timestamp_to_proto,
)
from suite.demo_story import (
    ACCOUNT_VIEW_WAIT_SECONDS,
    CALL_TIMEOUT_SECONDS,
    SAMPLE_CATALOG,
    SAMPLE_CDRS,
    Story,
    StoryError,
    request_id,
    suite_now,
)

# --- the story: rating (issue 3) ---------------------------------------------------------


def _sample(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryError(f"cannot read the sample {path}: {exc.strerror or exc}") from None


async def apply_catalog(story: Story) -> RenderableType:
    reply = await story.rating.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(
            document=_sample(SAMPLE_CATALOG),
            format=rating_pb2.CATALOG_FORMAT_YAML,
            source_name=SAMPLE_CATALOG.name,
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    plans = ", ".join(f"{p.code} ({p.currency})" for p in reply.plans)
    revision = (
        f"catalog revision {reply.revision}"
        if reply.changed
        else f"already catalog revision {reply.revision}"
    )
    return f"{SAMPLE_CATALOG.name}: {revision}; plans {plans}; {reply.prefix_count} prefixes"


def demo_usage_file(sample: str, *, account_id: str, start: datetime, end: datetime) -> bytes:
    """The sample CDRs rewritten as the demo account's usage.

    Every record gets the account and a record id of its own (``<id>-<account tail>``:
    rating de-duplicates record ids across files, so a second demo must not repeat the
    first's). Event times keep the sample's order and relative spacing, squeezed into
    ``[start, end]``: after the subscription started (rating rates an event with the
    plan in force at its time) and not after now (later events would be refused as
    future). The time bands that apply are those of the moment the demo runs, in the
    account's time zone; durations, destinations and services are the sample's.
    """
    reader = csv.DictReader(io.StringIO(sample))
    if reader.fieldnames is None or not {"record_id", "account_id", "event_time"} <= set(
        reader.fieldnames
    ):
        raise StoryError("the sample CDR file lacks record_id, account_id or event_time")
    rows = list(reader)
    times = [datetime.fromisoformat(row["event_time"]) for row in rows]
    first, last = min(times, default=start), max(times, default=start)
    # Whole milliseconds: start rounded up and end rounded down keep every time inside.
    start = start.replace(microsecond=start.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
    end = max(start, end.replace(microsecond=end.microsecond // 1000 * 1000))
    tag = account_id[-6:]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames, lineterminator="\n")
    writer.writeheader()
    for row, at in zip(rows, times, strict=True):
        share = (at - first) / (last - first) if last > first else 0.0
        moment = start + (end - start) * share
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        writer.writerow(
            {
                **row,
                "record_id": f"{row['record_id']}-{tag}",
                "account_id": account_id,
                "event_time": max(start, moment).isoformat(timespec="milliseconds"),
            }
        )
    return out.getvalue().encode("utf-8")


async def rating_knows_account(story: Story) -> RenderableType:
    """Rating builds its view of accounts from accounts' events; a quote proves it is there."""
    account = story.fact("account")
    subscription = story.fact("subscription")
    since = timestamp_from_proto(subscription.start_time) + timedelta(milliseconds=1)
    started = time.monotonic()
    while True:
        try:
            reply = await story.rating.Quote(
                rating_pb2.QuoteRequest(
                    account_id=account.account_id,
                    service="voice",
                    destination="+31 20 555 0101",
                    event_time=timestamp_to_proto(since),
                    quantity=rating_pb2.Quantity(value=60, unit=rating_pb2.QUANTITY_UNIT_SECOND),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            break
        except grpc.aio.AioRpcError as error:
            if details_of(error).reason not in ("UNKNOWN_ACCOUNT", "NO_PLAN"):
                raise
            if time.monotonic() - started > ACCOUNT_VIEW_WAIT_SECONDS:
                details = details_of(error)
                raise StoryError(
                    f"rating did not learn account {account.account_id} and its plan within "
                    f"{ACCOUNT_VIEW_WAIT_SECONDS:.0f}s ({details.reason}: {details.message})"
                ) from None
            await asyncio.sleep(0.2)
    waited = (time.monotonic() - started) * 1000
    charge = reply.charge
    return (
        f"{account.account_id} on {charge.plan_code} v{charge.plan_version} after "
        f"{waited:.0f} ms; a minute to {escape(charge.destination.name)} now costs "
        f"{money_text(charge.gross)} {charge.gross.currency_code} "
        f"(band {_bands(charge)}, {charge.time_zone}, tax region {charge.tax_region})"
    )


async def import_usage(story: Story) -> RenderableType:
    account = story.fact("account")
    subscription = story.fact("subscription")
    data = demo_usage_file(
        _sample(SAMPLE_CDRS),
        account_id=account.account_id,
        start=timestamp_from_proto(subscription.start_time),
        end=suite_now(story),
    )
    reply = await story.rating.ImportUsage(
        iter(
            [
                rating_pb2.ImportUsageRequest(
                    request_id=request_id(),
                    file_name=SAMPLE_CDRS.name,
                    options=rating_pb2.UsageFileOptions(
                        format=rating_pb2.USAGE_FILE_FORMAT_CSV, preset="reckon"
                    ),
                    chunk=data,
                )
            ]
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    imported = reply.file
    story.facts["usage_file"] = imported
    status = rating_pb2.ImportStatus.Name(imported.status).removeprefix("IMPORT_STATUS_")
    totals = ", ".join(f"{money_text(t)} {t.currency_code}" for t in imported.rated_totals)
    reasons = ", ".join(f"{c.reason} {c.count}" for c in imported.rejects_by_reason)
    colour = "green" if imported.status == rating_pb2.IMPORT_STATUS_COMPLETED else "bold red"
    return (
        f"{imported.file_name} ({imported.file_id}): [{colour}]{status}[/]; "
        f"records {imported.records}, rated {imported.rated}, rejected {imported.rejected}"
        + (f" ({reasons})" if reasons else "")
        + f", skipped {imported.skipped}; rated total {totals or '-'} gross"
    )


def money_text(money: Any) -> str:
    """An exact amount, at least to the cent: ``6.41``, ``0.0035``."""
    amount = (Decimal(money.units) + Decimal(money.nanos).scaleb(-9)).normalize()
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"{amount:f}"


def _bands(charge: Any) -> str:
    bands: list[str] = []
    for segment in charge.segments:
        if segment.band not in bands:
            bands.append(segment.band)
    return "+".join(bands) or "-"


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}:{rest:02d}"


async def rated_lines(story: Story) -> RenderableType:
    imported = story.fact("usage_file")
    reply = await story.rating.ListRatedUsage(
        rating_pb2.ListRatedUsageRequest(file_id=imported.file_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    currencies = sorted({r.amount.currency_code for r in reply.rated_usage})
    table = Table(
        box=None,
        padding=(0, 1),
        show_edge=False,
        caption=f"amounts in {', '.join(currencies)}" if currencies else None,
        caption_justify="left",
    )
    table.add_column("record", no_wrap=True)
    table.add_column("destination", no_wrap=True)
    table.add_column("band", no_wrap=True)
    table.add_column("duration", justify="right")
    for column in ("net", "tax", "gross"):
        table.add_column(column, justify="right")
    for rated in reply.rated_usage:
        charge = rated.charge
        table.add_row(
            rated.record_id,
            # The matched destination (the number is in the CDR); services without
            # destinations (recording) show the service.
            escape(charge.destination.name or rated.service),
            _bands(charge),
            _duration(rated.quantity.value)
            if rated.quantity.unit == rating_pb2.QUANTITY_UNIT_SECOND
            else str(rated.quantity.value),
            money_text(rated.net),
            money_text(rated.tax),
            money_text(rated.amount),
        )
    return table


async def rejected_records(story: Story) -> RenderableType:
    imported = story.fact("usage_file")
    reply = await story.rating.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    if not reply.rejects:
        return "no rejects"
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for column in ("line", "record", "reason"):
        table.add_column(column, no_wrap=True)
    table.add_column("why")
    for reject in reply.rejects:
        table.add_row(
            str(reject.line),
            reject.record_id,
            f"[yellow]{reject.reason}[/]",
            escape(reject.message),
        )
    return table
