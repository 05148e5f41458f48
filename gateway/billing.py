"""Billing routes under ``/v1``: invoices (search, details, documents).

Same rules as ``gateway.api``: a customer sees only invoices whose ``customer_id`` is
theirs (404 otherwise, as for an unknown id) and their calls carry the scope metadata.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from gateway.api import PROBLEMS, Id, PageSize, PageToken, SelfReader, call, clients_of
from gateway.auth import Principal
from gateway.problems import GatewayProblem
from gateway.proto_json import model_for, page_model, to_json
from reckon.invoicing.v1 import invoicing_pb2 as ipb

router = APIRouter(prefix="/v1", responses=PROBLEMS)

InvoiceStatusName = Literal[
    "INVOICE_STATUS_DRAFT",
    "INVOICE_STATUS_OPEN",
    "INVOICE_STATUS_PAID",
    "INVOICE_STATUS_PARTIALLY_PAID",
    "INVOICE_STATUS_VOID",
    "INVOICE_STATUS_UNCOLLECTIBLE",
]
FORMATS = {
    "pdf": ipb.DocumentFormat.DOCUMENT_FORMAT_PDF,
    "html": ipb.DocumentFormat.DOCUMENT_FORMAT_HTML,
    "ubl": ipb.DocumentFormat.DOCUMENT_FORMAT_UBL,
    "cii": ipb.DocumentFormat.DOCUMENT_FORMAT_CII,
    "facturx": ipb.DocumentFormat.DOCUMENT_FORMAT_FACTURX,
}
DocumentFormat = Literal["pdf", "html", "ubl", "cii", "facturx"]


async def owned_invoice(
    request: Request, principal: Principal, invoice_id: str
) -> ipb.GetInvoiceResponse:
    answer: ipb.GetInvoiceResponse = await call(
        request,
        clients_of(request).invoicing.GetInvoice,
        ipb.GetInvoiceRequest(invoice_id=invoice_id),
        principal,
    )
    if principal.customer_id is not None and answer.invoice.customer_id != principal.customer_id:
        raise GatewayProblem(404, "INVOICE_NOT_FOUND", "invoice not found")
    return answer


@router.get(
    "/invoices",
    response_model=page_model("InvoicePage", ipb.Invoice.DESCRIPTOR, "invoices"),
    tags=["invoices"],
)
async def search_invoices(
    request: Request,
    principal: SelfReader,
    customer_id: Annotated[str, Query(max_length=64)] = "",
    account_id: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[list[InvoiceStatusName] | None, Query()] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    """Invoices, newest first, without lines (the details have them)."""
    if principal.customer_id is not None:
        if customer_id and customer_id != principal.customer_id:
            raise GatewayProblem(404, "CUSTOMER_NOT_FOUND", "customer not found")
        customer_id = principal.customer_id
    answer = await call(
        request,
        clients_of(request).invoicing.SearchInvoices,
        ipb.SearchInvoicesRequest(
            customer_id=customer_id,
            account_id=account_id,
            statuses=[ipb.InvoiceStatus.Value(name) for name in status or []],
            page_size=page_size,
            page_token=page_token,
        ),
        principal,
    )
    return JSONResponse(to_json(answer))


@router.get(
    "/invoices/{invoice_id}",
    response_model=model_for(ipb.GetInvoiceResponse.DESCRIPTOR),
    tags=["invoices"],
)
async def get_invoice(request: Request, principal: SelfReader, invoice_id: Id) -> JSONResponse:
    """The invoice with its lines, history, payments, credit notes and disputes."""
    return JSONResponse(to_json(await owned_invoice(request, principal, invoice_id)))


DOCUMENT_TYPES = {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
    "text/html": {"schema": {"type": "string"}},
    "application/xml": {"schema": {"type": "string"}},
}


@router.get(
    "/invoices/{invoice_id}/document",
    response_class=Response,
    responses={200: {"content": DOCUMENT_TYPES, "description": "The document's bytes"}},
    tags=["invoices"],
)
async def invoice_document(
    request: Request,
    principal: SelfReader,
    invoice_id: Id,
    format: Annotated[
        DocumentFormat, Query(description="pdf (default), html, ubl, cii, facturx")
    ] = "pdf",
) -> Response:
    """The invoice as a PDF, HTML, or an EN 16931 e-invoice (UBL, CII, Factur-X PDF)."""
    await owned_invoice(request, principal, invoice_id)
    answer = await call(
        request,
        clients_of(request).invoicing.GetInvoiceDocument,
        ipb.GetInvoiceDocumentRequest(invoice_id=invoice_id, format=FORMATS[format]),
        principal,
    )
    filename = answer.file_name.replace('"', "") or f"{invoice_id}.{format}"
    media_type = answer.media_type or "application/octet-stream"
    if media_type.endswith("+xml") or media_type == "text/xml":
        media_type = "application/xml"
    return Response(
        answer.content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
