"""The bill-run RPCs of the invoicing servicer (a mixin of ``InvoicingServicer``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.common.errors import Violations
from services.common.proto_convert import decode_page_token, encode_page_token, page_size_from_proto
from services.invoicing.entrypoints import translate as tr
from services.invoicing.service_layer import billruns, handlers
from services.invoicing.service_layer.drafting import FeePricer
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

R = TypeVar("R")


class BillRunRpcs:
    _uf: Callable[[], InvoicingUnitOfWork]
    _pricer: FeePricer

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def StartBillRun(
        self, request: pb.StartBillRunRequest, context: Any
    ) -> pb.StartBillRunResponse:
        v = Violations()
        scope = tr.scope_from_proto(v, request.scope)
        billing_date = tr.date_from_proto(v, request.billing_date, "billing_date")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        result = await self._run(
            billruns.start_bill_run,
            self._uf,
            self._pricer,
            scope,
            billing_date,
            dry_run=request.dry_run,
            auto_accept=request.auto_accept,
            idem=idem,
        )
        return pb.StartBillRunResponse(
            bill_run=tr.bill_run_to_proto(result.run),
            preview=[tr.invoice_to_proto(i) for i in result.preview],
        )

    def _run_id(self, request: Any) -> tuple[str, handlers.Idem]:
        v = Violations()
        run_id = tr.resource_id(v, request.bill_run_id, "bill_run_id", "run")
        idem = (
            tr.idem(v, request, request.request_id)
            if hasattr(request, "request_id")
            else handlers.Idem()
        )
        v.raise_if_any()
        return run_id, idem

    async def GetBillRun(
        self, request: pb.GetBillRunRequest, context: Any
    ) -> pb.GetBillRunResponse:
        run_id, _ = self._run_id(request)
        run = await self._run(billruns.get_bill_run, self._uf, run_id)
        return pb.GetBillRunResponse(bill_run=tr.bill_run_to_proto(run))

    async def ListBillRuns(
        self, request: pb.ListBillRunsRequest, context: Any
    ) -> pb.ListBillRunsResponse:
        v = Violations()
        limit = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v) or {}
        if request.state not in pb.BillRunState.values():
            v.add("state", "is not a bill run state")
        v.raise_if_any()
        state = tr.bill_run_state_from_proto(request.state)
        runs = await self._run(
            billruns.list_bill_runs, self._uf, state, cursor.get("before", ""), limit + 1
        )
        token = ""
        if len(runs) > limit:
            runs = runs[:limit]
            token = encode_page_token({"before": runs[-1].bill_run_id})
        return pb.ListBillRunsResponse(
            bill_runs=[tr.bill_run_to_proto(r) for r in runs], next_page_token=token
        )

    async def AcceptBillRun(
        self, request: pb.AcceptBillRunRequest, context: Any
    ) -> pb.AcceptBillRunResponse:
        run_id, idem = self._run_id(request)
        run = await self._run(billruns.accept_bill_run, self._uf, run_id, idem)
        return pb.AcceptBillRunResponse(bill_run=tr.bill_run_to_proto(run))

    async def CancelBillRun(
        self, request: pb.CancelBillRunRequest, context: Any
    ) -> pb.CancelBillRunResponse:
        run_id, idem = self._run_id(request)
        run = await self._run(billruns.cancel_bill_run, self._uf, run_id, idem)
        return pb.CancelBillRunResponse(bill_run=tr.bill_run_to_proto(run))

    async def SendBillRun(
        self, request: pb.SendBillRunRequest, context: Any
    ) -> pb.SendBillRunResponse:
        run_id, idem = self._run_id(request)
        run, sent = await self._run(billruns.send_bill_run, self._uf, run_id, idem)
        return pb.SendBillRunResponse(bill_run=tr.bill_run_to_proto(run), invoices_sent=sent)
