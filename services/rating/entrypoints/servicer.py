"""The gRPC face of the rating service: proto in, service layer, proto out.

Each method validates its whole request first (``Violations`` naming every bad
field), then runs the synchronous use case in a thread (ADR 0002). Uploads
(usage files, destination tables) are spooled to a temporary file while they
arrive, hashing as they go, so a file of any size is imported in constant
memory and identified by its checksum before a single record is rated.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from services.common.grpc_errors import status_proto
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    money_from_proto,
    page_size_from_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from services.rating.entrypoints import converters as convert
from services.rating.entrypoints.plan_fees_rpc import plan_fees_rpc
from services.rating.service_layer.catalog import apply_catalog, import_destinations
from services.rating.service_layer.imports import ImportResult
from services.rating.service_layer.pricing import normalised
from services.rating.service_layer.questions import (
    PricedUsage,
    PricingFailure,
    rate_event,
    rate_events,
    units_for_amount,
)
from services.rating.service_layer.rejects import reprocess_rejects
from services.rating.service_layer.rerating import rerate, totals_of
from services.rating.service_layer.unit_of_work import RejectFilter, UsageFilter
from services.rating.service_layer.usage_formats import ImportOptions

if TYPE_CHECKING:  # the composition root imports this module
    from services.rating.bootstrap import RatingApp

T = TypeVar("T")

MAX_REQUEST_ID: Final = 128
MAX_FILE_NAME: Final = 255
MAX_DESTINATION_UPLOAD: Final = 64 * 1024 * 1024
MAX_QUOTE_UNITS: Final = 10**15

# The ErrorInfo domain of rating's errors (create_server uses the same).
DOMAIN = "reckon.rating"
# Longer ids and codes than any rating issues are bad input, not "not found".
MAX_CODE = 64
MAX_FILE_ID = 40


def _request_id(value: str, violations: Violations) -> None:
    if len(value) > MAX_REQUEST_ID:
        violations.add("request_id", f"must be at most {MAX_REQUEST_ID} characters")


def _file_name(value: str, violations: Violations) -> str:
    name = os.path.basename(value.replace("\\", "/"))
    if len(name) > MAX_FILE_NAME:
        violations.add("file_name", f"must be at most {MAX_FILE_NAME} characters")
    if any(ord(ch) < 32 for ch in name):
        violations.add("file_name", "must not contain control characters")
    return name


def _discard(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class _Spooled:
    path: Path
    checksum: str
    size: int
    first: Any


async def _spool(
    requests: AsyncIterator[Any],
    directory: Path,
    *,
    limit: int | None = None,
    check_first: Callable[[Any], object] | None = None,
) -> _Spooled:
    """Write the ``chunk`` of every message to a temporary file; keep the first message.

    ``check_first`` validates the first message (the settings) before anything is
    written, so a bad request is refused without receiving the whole file.
    """
    handle, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    first = None
    try:
        with os.fdopen(handle, "wb") as sink:
            async for request in requests:
                if first is None:
                    first = request
                    if check_first is not None:
                        check_first(request)
                chunk = request.chunk
                if chunk:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise InvalidArgument.field(
                            "chunk", f"the file is larger than {limit // (1024 * 1024)} MiB"
                        )
                    digest.update(chunk)
                    sink.write(chunk)
    except BaseException:
        _discard(path)
        raise
    return _Spooled(path, digest.hexdigest(), size, first)


class RatingServicer(rating_pb2_grpc.RatingServiceServicer):
    def __init__(self, app: RatingApp) -> None:
        self._app = app

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    # -- catalog ---------------------------------------------------------------------

    async def ApplyCatalog(
        self, request: rating_pb2.ApplyCatalogRequest, context: Any
    ) -> rating_pb2.ApplyCatalogResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        violations.require(request.document, "document")
        if request.format not in (
            rating_pb2.CATALOG_FORMAT_UNSPECIFIED,
            rating_pb2.CATALOG_FORMAT_YAML,
            rating_pb2.CATALOG_FORMAT_JSON,
        ):
            violations.add("format", "must be YAML or JSON")
        if len(request.source_name) > MAX_FILE_NAME:
            violations.add("source_name", f"must be at most {MAX_FILE_NAME} characters")
        violations.raise_if_any()
        app = self._app
        document_format = "json" if request.format == rating_pb2.CATALOG_FORMAT_JSON else "yaml"
        outcome = await self._run(
            lambda: apply_catalog(
                app.uow_factory,
                app.tariffs,
                app.clock,
                document=request.document,
                document_format=document_format,
                source_name=request.source_name,
                validate_only=request.validate_only,
                request_id=request.request_id,
            )
        )
        plans, packages = convert.catalog_summaries(outcome.catalog)
        return rating_pb2.ApplyCatalogResponse(
            revision=outcome.revision,
            changed=outcome.changed,
            plans=plans,
            price_packages=packages,
            prefix_count=outcome.prefix_count,
        )

    async def GetPlan(
        self, request: rating_pb2.GetPlanRequest, context: Any
    ) -> rating_pb2.GetPlanResponse:
        violations = Violations()
        violations.require(request.plan_code, "plan_code")
        if len(request.plan_code) > MAX_CODE:
            violations.add("plan_code", f"must be at most {MAX_CODE} characters")
        violations.raise_if_any()
        tariff = await self._run(self._app.tariffs.current)
        plan = tariff.catalog.plan(request.plan_code)
        if plan is None:
            raise NotFound(
                f"no price plan {request.plan_code!r}",
                reason="UNKNOWN_PLAN",
                resource_name=request.plan_code,
            )
        return rating_pb2.GetPlanResponse(plan=convert.plan_to_proto(plan))

    async def ListPlans(
        self, request: rating_pb2.ListPlansRequest, context: Any
    ) -> rating_pb2.ListPlansResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        violations.raise_if_any()
        tariff = await self._run(self._app.tariffs.current_or_none)
        if tariff is None:  # no catalog applied yet: no plans, not an error
            return rating_pb2.ListPlansResponse()
        after = (cursor or {}).get("code", "")
        plans = sorted((p for p in tariff.catalog.plans if p.code > after), key=lambda p: p.code)
        page = plans[:size]
        token = encode_page_token({"code": page[-1].code}) if len(plans) > size else ""
        return rating_pb2.ListPlansResponse(
            plans=[convert.plan_to_proto(p) for p in page], next_page_token=token
        )

    async def ListPricePackages(
        self, request: rating_pb2.ListPricePackagesRequest, context: Any
    ) -> rating_pb2.ListPricePackagesResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        violations.raise_if_any()
        tariff = await self._run(self._app.tariffs.current_or_none)
        if tariff is None:  # no catalog applied yet: no packages, not an error
            return rating_pb2.ListPricePackagesResponse()
        after = (cursor or {}).get("code", "")
        packages = sorted(
            (
                p
                for p in tariff.catalog.packages
                if p.code > after
                and (not request.customer_id or p.customer_id == request.customer_id)
            ),
            key=lambda p: p.code,
        )
        page = packages[:size]
        token = encode_page_token({"code": page[-1].code}) if len(packages) > size else ""
        return rating_pb2.ListPricePackagesResponse(
            price_packages=[convert.package_to_proto(p) for p in page], next_page_token=token
        )

    async def ListCatalogRevisions(
        self, request: rating_pb2.ListCatalogRevisionsRequest, context: Any
    ) -> rating_pb2.ListCatalogRevisionsResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        before = None
        if cursor is not None:
            value = cursor.get("before", "")
            if not value.isdigit():
                violations.add("page_token", "is not a token this service issued")
            else:
                before = int(value)
        violations.raise_if_any()

        def load() -> list[rating_pb2.CatalogRevision]:
            with self._app.uow_factory() as uow:
                revisions = uow.catalog.list(before, size + 1)
            return [
                rating_pb2.CatalogRevision(
                    revision=r.revision or 0,
                    applied_time=timestamp_to_proto(r.applied_at),
                    source_name=r.source_name,
                    checksum=r.checksum,
                    plan_count=r.plan_count,
                    prefix_count=r.prefix_count,
                )
                for r in revisions
            ]

        revisions = await self._run(load)
        token = (
            encode_page_token({"before": str(revisions[size - 1].revision)})
            if len(revisions) > size
            else ""
        )
        return rating_pb2.ListCatalogRevisionsResponse(
            revisions=revisions[:size], next_page_token=token
        )

    async def ImportDestinations(
        self, request_iterator: AsyncIterator[rating_pb2.ImportDestinationsRequest], context: Any
    ) -> rating_pb2.ImportDestinationsResponse:
        app = self._app
        spooled = await _spool(request_iterator, app.spool_dir, limit=MAX_DESTINATION_UPLOAD)
        try:
            first = spooled.first
            violations = Violations()
            if first is None:
                violations.add("chunk", "the stream carried no file")
                violations.raise_if_any()
            _request_id(first.request_id, violations)
            name = _file_name(first.file_name, violations)
            if spooled.size == 0:
                violations.add("chunk", "the file is empty")
            violations.raise_if_any()
            outcome = await self._run(
                lambda: import_destinations(
                    app.uow_factory,
                    app.tariffs,
                    app.clock,
                    path=spooled.path,
                    file_name=name,
                    has_header=first.has_header,
                    request_id=first.request_id,
                )
            )
        finally:
            _discard(spooled.path)
        return rating_pb2.ImportDestinationsResponse(
            revision=outcome.revision,
            prefix_count=outcome.prefix_count,
            destination_count=outcome.destination_count,
        )

    # -- rating ----------------------------------------------------------------------

    def _priced(self, priced: PricedUsage, start: Any) -> rating_pb2.Charge:
        return convert.charge_to_proto(priced.explained, start)

    async def RateEvent(
        self, request: rating_pb2.RateEventRequest, context: Any
    ) -> rating_pb2.RateEventResponse:
        violations = Violations()
        usage = None
        if not request.HasField("event"):
            violations.add("event", "is required")
        else:
            with violations.nested("event") as nested:
                usage = convert.usage_from_proto(request.event, nested, now=self._app.clock.now())
        violations.raise_if_any()
        assert usage is not None
        app = self._app
        priced = await self._run(lambda: rate_event(app.uow_factory, app.tariffs, usage))
        return rating_pb2.RateEventResponse(charge=self._priced(priced, usage.event_time))

    async def RateEvents(
        self, request: rating_pb2.RateEventsRequest, context: Any
    ) -> rating_pb2.RateEventsResponse:
        violations = Violations()
        if len(request.events) > convert.MAX_BATCH:
            violations.add("events", f"at most {convert.MAX_BATCH} events per batch")
            violations.raise_if_any()
        now = self._app.clock.now()
        batch = []
        for index, event in enumerate(request.events):
            with violations.nested(f"events[{index}]") as nested:
                batch.append(convert.usage_from_proto(event, nested, now=now))
        violations.raise_if_any()
        usages = [u for u in batch if u is not None]
        app = self._app
        results = await self._run(lambda: rate_events(app.uow_factory, app.tariffs, usages))
        return rating_pb2.RateEventsResponse(
            results=[
                self._result(index, usage.record_id, usage.event_time, outcome)
                for index, (usage, outcome) in enumerate(zip(usages, results, strict=True))
            ]
        )

    def _result(
        self, index: int, record_id: str, start: Any, outcome: PricedUsage | PricingFailure
    ) -> rating_pb2.RateEventResult:
        if isinstance(outcome, PricingFailure):
            error = outcome.error or FailedPrecondition(outcome.message, reason=outcome.reason)
            return rating_pb2.RateEventResult(
                index=index,
                record_id=record_id,
                error=rating_pb2.RatingError(
                    reason=outcome.reason, message=outcome.message, field=outcome.field
                ),
                status=status_proto(error, domain=DOMAIN),
            )
        return rating_pb2.RateEventResult(
            index=index, record_id=record_id, charge=self._priced(outcome, start)
        )

    async def StreamRateEvents(
        self, request_iterator: AsyncIterator[rating_pb2.StreamRateEventsRequest], context: Any
    ) -> AsyncIterator[rating_pb2.StreamRateEventsResponse]:
        # Events are priced in small groups (what has arrived), answered in order: one
        # thread hop and one account lookup per group instead of per event.
        app = self._app
        index = 0
        queue: asyncio.Queue[rating_pb2.StreamRateEventsRequest | None] = asyncio.Queue(256)

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    await queue.put(request)
            finally:
                await queue.put(None)

        reader = asyncio.ensure_future(pump())
        try:
            finished = False
            while not finished:
                first = await queue.get()
                if first is None:
                    break
                group = [first]
                while not queue.empty() and len(group) < 500:
                    following = queue.get_nowait()
                    if following is None:
                        finished = True
                        break
                    group.append(following)
                now = app.clock.now()
                answers: list[rating_pb2.RateEventResult | None] = []
                usages = []
                for request in group:
                    violations = Violations()
                    with violations.nested("event") as nested:
                        usage = convert.usage_from_proto(request.event, nested, now=now)
                    if usage is None:
                        first_problem = violations.items[0]
                        answers.append(
                            rating_pb2.RateEventResult(
                                index=index,
                                record_id=request.event.record_id,
                                error=rating_pb2.RatingError(
                                    reason="INVALID_ARGUMENT",
                                    message=first_problem.description,
                                    field=first_problem.field,
                                ),
                                status=status_proto(
                                    InvalidArgument(list(violations.items)), domain=DOMAIN
                                ),
                            )
                        )
                    else:
                        answers.append(None)
                        usages.append((index, usage))
                    index += 1
                batch = [usage for _, usage in usages]
                priced = (
                    await self._run(partial(rate_events, app.uow_factory, app.tariffs, batch))
                    if batch
                    else []
                )
                priced_iter = iter(zip(usages, priced, strict=True))
                for answer in answers:
                    if answer is None:
                        (position, usage), outcome = next(priced_iter)
                        answer = self._result(position, usage.record_id, usage.event_time, outcome)
                    yield rating_pb2.StreamRateEventsResponse(result=answer)
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader

    async def Quote(
        self, request: rating_pb2.QuoteRequest, context: Any
    ) -> rating_pb2.QuoteResponse:
        violations = Violations()
        units, unit = 0, ""
        if not request.HasField("quantity"):
            violations.add("quantity", "is required")
        else:
            units = request.quantity.value
            if not 0 <= units <= MAX_QUOTE_UNITS:
                violations.add(
                    "quantity.value", f"is out of range: must be 0 to {MAX_QUOTE_UNITS} (10^15)"
                )
            unit = convert.UNIT_NAMES.get(request.quantity.unit, "")
        usage = convert.quote_usage(
            request, violations, now=self._app.clock.now(), quantity_value=units, unit=unit
        )
        violations.raise_if_any()
        app = self._app
        priced = await self._run(lambda: rate_event(app.uow_factory, app.tariffs, usage))
        return rating_pb2.QuoteResponse(charge=self._priced(priced, usage.event_time))

    async def UnitsForAmount(
        self, request: rating_pb2.UnitsForAmountRequest, context: Any
    ) -> rating_pb2.UnitsForAmountResponse:
        violations = Violations()
        money = None
        if not request.HasField("amount"):
            violations.add("amount", "is required")
        else:
            money = money_from_proto(request.amount, "amount", violations)
        # Search up to a month of seconds or 10^12 units: far beyond any real balance.
        usage = convert.quote_usage(
            request, violations, now=self._app.clock.now(), quantity_value=0, unit=""
        )
        violations.raise_if_any()
        assert money is not None
        app = self._app

        def work() -> tuple[int, PricedUsage]:
            tariff = app.tariffs.current()
            product = tariff.units.get(usage.service)
            usage.quantity = (
                31 * 86_400 if product is not None and product.value == "second" else 10**12
            )
            return units_for_amount(
                app.uow_factory, app.tariffs, usage, money.amount, money.currency
            )

        units, priced = await self._run(work)
        return rating_pb2.UnitsForAmountResponse(
            quantity=convert.quantity(units, priced.unit),
            charge=self._priced(priced, usage.event_time),
        )

    # -- usage import ----------------------------------------------------------------

    async def ImportUsage(
        self, request_iterator: AsyncIterator[rating_pb2.ImportUsageRequest], context: Any
    ) -> rating_pb2.ImportUsageResponse:
        app = self._app

        def settings(first: rating_pb2.ImportUsageRequest) -> tuple[str, ImportOptions]:
            violations = Violations()
            _request_id(first.request_id, violations)
            name = _file_name(first.file_name, violations)
            violations.require(name, "file_name")
            options = convert.import_options_from_proto(first.options, name)
            with violations.nested("options") as nested:
                options.validate(nested)
            violations.raise_if_any()
            return name, options

        spooled = await _spool(request_iterator, app.spool_dir, check_first=settings)
        try:
            first = spooled.first
            if first is None:
                raise InvalidArgument.field("chunk", "the stream carried no file")
            name, options = settings(first)
            result: ImportResult = await self._run(
                lambda: app.importer.import_path(
                    spooled.path,
                    name,
                    options,
                    request_id=first.request_id,
                    checksum=spooled.checksum,
                )
            )
        finally:
            _discard(spooled.path)
        return rating_pb2.ImportUsageResponse(
            file=convert.import_file_to_proto(result.file, result.duplicate_of)
        )

    async def GetImportFile(
        self, request: rating_pb2.GetImportFileRequest, context: Any
    ) -> rating_pb2.GetImportFileResponse:
        violations = Violations()
        violations.require(request.file_id, "file_id")
        if len(request.file_id) > MAX_FILE_ID:
            violations.add("file_id", f"must be at most {MAX_FILE_ID} characters")
        violations.raise_if_any()

        def load() -> rating_pb2.ImportFile:
            with self._app.uow_factory() as uow:
                found = uow.imports.get(request.file_id)
                if found is None:
                    raise NotFound(
                        f"no import {request.file_id!r}",
                        reason="UNKNOWN_FILE",
                        resource_name=request.file_id,
                    )
                return convert.import_file_to_proto(found)

        return rating_pb2.GetImportFileResponse(file=await self._run(load))

    async def ListImportFiles(
        self, request: rating_pb2.ListImportFilesRequest, context: Any
    ) -> rating_pb2.ListImportFilesResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        before = None
        if cursor is not None:
            try:
                before = (datetime.fromisoformat(cursor["started"]), cursor["file_id"])
            except (KeyError, ValueError):
                violations.add("page_token", "is not a token this service issued")
        violations.raise_if_any()

        def load() -> rating_pb2.ListImportFilesResponse:
            with self._app.uow_factory() as uow:
                files = uow.imports.list(before, size + 1)
                token = ""
                if len(files) > size:
                    last = files[size - 1]
                    token = encode_page_token(
                        {"started": last.started_at.isoformat(), "file_id": last.file_id}
                    )
                return rating_pb2.ListImportFilesResponse(
                    files=[convert.import_file_to_proto(f) for f in files[:size]],
                    next_page_token=token,
                )

        return await self._run(load)

    def _reject_filter(
        self,
        file_id: str,
        reason: str,
        violations: Violations,
        status: int = 0,
        reject_ids: tuple[str, ...] = (),
    ) -> RejectFilter:
        if len(file_id) > 40:
            violations.add("file_id", "must be at most 40 characters")
        if len(reason) > 64:
            violations.add("reason", "must be at most 64 characters")
        status_name = ""
        if status:
            if status not in convert.REJECT_STATUS_NAMES:
                violations.add("status", "is not a known status")
            status_name = convert.REJECT_STATUS_NAMES.get(status, "")  # type: ignore[call-overload]
        ids: list[int] = []
        for index, reject_id in enumerate(reject_ids):
            if not reject_id.isdigit() or len(reject_id) > 18:
                violations.add(f"reject_ids[{index}]", "is not a reject id")
            else:
                ids.append(int(reject_id))
        return RejectFilter(file_id, reason.upper(), status_name, tuple(ids))

    async def ListRejects(
        self, request: rating_pb2.ListRejectsRequest, context: Any
    ) -> rating_pb2.ListRejectsResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        after = None
        if cursor is not None:
            if not cursor.get("after", "").isdigit():
                violations.add("page_token", "is not a token this service issued")
            else:
                after = int(cursor["after"])
        query = self._reject_filter(request.file_id, request.reason, violations, request.status)
        violations.raise_if_any()

        def load() -> rating_pb2.ListRejectsResponse:
            with self._app.uow_factory() as uow:
                found = uow.rejects.list(query, after, size + 1)
                names: dict[str, str] = {}
                for file_id in {r.file_id for r in found}:
                    source = uow.imports.get(file_id)
                    names[file_id] = source.file_name if source is not None else ""
                counts = uow.rejects.counts(query)
                token = ""
                if len(found) > size:
                    token = encode_page_token({"after": str(found[size - 1].reject_id)})
                return rating_pb2.ListRejectsResponse(
                    rejects=[convert.reject_to_proto(r, names[r.file_id]) for r in found[:size]],
                    next_page_token=token,
                    counts=convert.reason_counts(counts),
                )

        return await self._run(load)

    async def ReprocessRejects(
        self, request: rating_pb2.ReprocessRejectsRequest, context: Any
    ) -> rating_pb2.ReprocessRejectsResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        query = self._reject_filter(
            request.file_id, request.reason, violations, reject_ids=tuple(request.reject_ids)
        )
        violations.raise_if_any()
        app = self._app
        outcome = await self._run(
            lambda: reprocess_rejects(
                app.uow_factory, app.tariffs, app.clock, app.limits, app.metrics, query
            )
        )
        return rating_pb2.ReprocessRejectsResponse(
            attempted=outcome.attempted,
            rated=outcome.rated,
            discarded=outcome.discarded,
            still_rejected=outcome.still_rejected,
            remaining_by_reason=convert.reason_counts(outcome.remaining_by_reason),
        )

    async def Rerate(
        self, request: rating_pb2.RerateRequest, context: Any
    ) -> rating_pb2.RerateResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        violations.require(request.account_id, "account_id")
        if len(request.account_id) > convert.MAX_ACCOUNT_ID:
            violations.add("account_id", "must be at most 64 characters")
        start = end = None
        for field_name in ("period_start", "period_end"):
            if not request.HasField(field_name):
                violations.add(field_name, "is required")
        if request.HasField("period_start"):
            start = timestamp_from_proto(request.period_start, "period_start")
        if request.HasField("period_end"):
            end = timestamp_from_proto(request.period_end, "period_end")
        if start is not None and end is not None and end <= start:
            violations.add("period_end", "must be after period_start")
        violations.raise_if_any()
        assert start is not None
        assert end is not None
        app = self._app
        run = await self._run(
            lambda: rerate(
                app.uow_factory,
                app.tariffs,
                app.clock,
                account_id=request.account_id,
                start=start,
                end=end,
                request_id=request.request_id,
            )
        )
        return rating_pb2.RerateResponse(
            rerate_id=run.rerate_id,
            records=run.records,
            changed=run.changed,
            failed=run.failed,
            catalog_revision=run.catalog_revision,
            totals=[
                rating_pb2.RerateTotal(
                    old_total=convert._money(t.old_total, t.currency),
                    new_total=convert._money(t.new_total, t.currency),
                    difference=convert._money(t.difference, t.currency),
                )
                for t in totals_of(run)
            ],
        )

    async def ListRatedUsage(
        self, request: rating_pb2.ListRatedUsageRequest, context: Any
    ) -> rating_pb2.ListRatedUsageResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        after = None
        if cursor is not None:
            try:
                after = (datetime.fromisoformat(cursor["time"]), int(cursor["id"]))
            except (KeyError, ValueError):
                violations.add("page_token", "is not a token this service issued")
        if len(request.account_id) > convert.MAX_ACCOUNT_ID:
            violations.add("account_id", "must be at most 64 characters")
        if len(request.file_id) > 40:
            violations.add("file_id", "must be at most 40 characters")
        violations.raise_if_any()
        query = UsageFilter(
            account_id=request.account_id,
            period_start=timestamp_from_proto(request.period_start, "period_start")
            if request.HasField("period_start")
            else None,
            period_end=timestamp_from_proto(request.period_end, "period_end")
            if request.HasField("period_end")
            else None,
            file_id=request.file_id,
            include_history=request.include_history,
        )

        def load() -> rating_pb2.ListRatedUsageResponse:
            with self._app.uow_factory() as uow:
                rows = uow.usage.list(query, after, size + 1)
            tariff = self._app.tariffs.current_or_none()
            number_of = partial(normalised, tariff) if tariff is not None else None
            token = ""
            if len(rows) > size:
                last = rows[size - 1]
                token = encode_page_token({"time": last.event_time.isoformat(), "id": str(last.id)})
            return rating_pb2.ListRatedUsageResponse(
                rated_usage=[convert.rated_usage_to_proto(r, number_of) for r in rows[:size]],
                next_page_token=token,
            )

        return await self._run(load)

    async def PricePlanFees(
        self, request: rating_pb2.PricePlanFeesRequest, context: Any
    ) -> rating_pb2.PricePlanFeesResponse:
        return await plan_fees_rpc(self._app, request)


__all__ = ["RatingServicer"]
