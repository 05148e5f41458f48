"""Usage import RPCs: upload and inspect usage files, rejects and their re-processing,
re-rating, rated usage, and the release of a held import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Any

from reckon.rating.v1 import rating_pb2
from services.common.customer_scope import check_owner, customer_scope
from services.common.errors import InvalidArgument, NotFound, Violations
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    page_size_from_proto,
    timestamp_from_proto,
)
from services.rating.entrypoints import converters as convert
from services.rating.entrypoints.rpc_common import (
    MAX_FILE_ID,
    RpcBase,
    _discard,
    _file_name,
    _request_id,
    _spool,
)
from services.rating.service_layer.held import release_import
from services.rating.service_layer.imports import ImportResult
from services.rating.service_layer.pricing import normalised
from services.rating.service_layer.rejects import reprocess_rejects
from services.rating.service_layer.rerating import rerate, totals_of
from services.rating.service_layer.unit_of_work import RejectFilter, UsageFilter
from services.rating.service_layer.usage_formats import ImportOptions


class UsageRpcs(RpcBase):
    """ImportUsage, GetImportFile, ListImportFiles, ListRejects, ReprocessRejects, Rerate,
    ListRatedUsage and ReleaseImportFile; mixed into ``RatingServicer``."""

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

        checksum = request.checksum.lower()
        if checksum and (len(checksum) != 64 or not all(c in "0123456789abcdef" for c in checksum)):
            violations.add("checksum", "must be a SHA-256 in hex (64 characters)")
            violations.raise_if_any()

        def load() -> rating_pb2.ListImportFilesResponse:
            with self._app.uow_factory() as uow:
                if checksum:  # a client following its own upload: a handful of imports
                    found = sorted(
                        uow.imports.by_checksum(checksum), key=lambda f: f.started_at, reverse=True
                    )
                    return rating_pb2.ListImportFilesResponse(
                        files=[convert.import_file_to_proto(f) for f in found[:size]]
                    )
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
        if len(request.service) > 64:
            violations.add("service", "must be at most 64 characters")
        violations.raise_if_any()
        query = UsageFilter(
            service=request.service,
            include_held=request.include_held,
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

        scope = customer_scope(context)

        def load() -> rating_pb2.ListRatedUsageResponse:
            with self._app.uow_factory() as uow:
                if scope is not None:
                    # A customer's call (via the gateway) sees only its own accounts' usage.
                    known = uow.accounts.get(request.account_id) if request.account_id else None
                    owner = known.customer_id if known is not None else None
                    check_owner(scope, owner, reason="ACCOUNT_NOT_FOUND", what="account")
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

    async def ReleaseImportFile(
        self, request: rating_pb2.ReleaseImportFileRequest, context: Any
    ) -> rating_pb2.ReleaseImportFileResponse:
        violations = Violations()
        violations.require(request.file_id, "file_id")
        if len(request.file_id) > 40:
            violations.add("file_id", "must be at most 40 characters")
        if len(request.request_id) > 128:
            violations.add("request_id", "must be at most 128 characters")
        violations.raise_if_any()
        app = self._app

        def release() -> rating_pb2.ImportFile:
            released = release_import(
                app.uow_factory, app.clock, request.file_id, request_id=request.request_id
            )
            return convert.import_file_to_proto(released)

        return rating_pb2.ReleaseImportFileResponse(file=await self._run(release))
