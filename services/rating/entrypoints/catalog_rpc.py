"""Catalog RPCs: apply a catalog document, read plans, packages and revisions, import
destination tables (the destination upload is spooled like a usage file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from reckon.rating.v1 import rating_pb2
from services.common.errors import NotFound, Violations
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    page_size_from_proto,
    timestamp_to_proto,
)
from services.rating.entrypoints import converters as convert
from services.rating.entrypoints.rpc_common import (
    MAX_CODE,
    MAX_DESTINATION_UPLOAD,
    MAX_FILE_NAME,
    RpcBase,
    _discard,
    _file_name,
    _request_id,
    _spool,
)
from services.rating.service_layer.catalog import apply_catalog, import_destinations


class CatalogRpcs(RpcBase):
    """ApplyCatalog, GetPlan, ListPlans, ListPricePackages, ListCatalogRevisions and
    ImportDestinations; mixed into ``RatingServicer``."""

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
