"""Billing routes under ``/v1``: invoices (search, details, documents), paying an
invoice, payment methods and payment history.

Same rules as ``gateway.api``: a customer sees only invoices whose ``customer_id`` is
theirs (404 otherwise, as for an unknown id) and their calls carry the scope metadata.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.api import (
    PROBLEMS,
    Id,
    IdempotencyKey,
    PageSize,
    PageToken,
    SelfReader,
    SelfWriter,
    call,
    check_account,
    clients_of,
    owned_account,
    request_id,
)
from gateway.auth import Principal
from gateway.problems import GatewayProblem, openapi_problem_responses, operation_id
from gateway.proto_json import JsonBody, model_for, page_model, to_json
from reckon.invoicing.v1 import invoicing_pb2 as ipb
from reckon.payments.v1 import payments_pb2 as ppb

router = APIRouter(prefix="/v1", responses=PROBLEMS, generate_unique_id_function=operation_id)

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
    return JsonBody(to_json(answer))


@router.get(
    "/invoices/{invoice_id}",
    response_model=model_for(ipb.GetInvoiceResponse.DESCRIPTOR),
    tags=["invoices"],
)
async def get_invoice(request: Request, principal: SelfReader, invoice_id: Id) -> JSONResponse:
    """The invoice with its lines, history, payments, credit notes, disputes and notifications."""
    return JsonBody(to_json(await owned_invoice(request, principal, invoice_id)))


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


# --- payments ----------------------------------------------------------------------------
class CardIn(BaseModel):
    """A card for the provider to tokenise; only its token, brand and last four are kept."""

    number: str = Field(pattern=r"^[0-9 ]{12,23}$", examples=["4242424242424242"])
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2100)
    cvc: str = Field(pattern=r"^[0-9]{3,4}$")


class CardMethodIn(BaseModel):
    card: CardIn
    make_default: bool = False


class PayIn(BaseModel):
    """Pay with a method on file (``method_id``; the account's default when both are
    empty) or with a card given now (kept on file for later)."""

    method_id: str = Field(default="", max_length=64)
    card: CardIn | None = None


async def add_card(
    request: Request,
    principal: Principal,
    account_id: str,
    card: CardIn,
    make_default: bool,
    key: str | None,
) -> ppb.PaymentMethod:
    account = await owned_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).payments.AddPaymentMethod,
        ppb.AddPaymentMethodRequest(
            account_id=account_id,
            customer_id=account.customer_id,
            currency_code=account.currency_code,
            kind=ppb.PaymentMethodKind.PAYMENT_METHOD_KIND_CARD,
            card=ppb.CardInput(
                number=card.number.replace(" ", ""),
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                cvc=card.cvc,
            ),
            make_default=make_default,
            request_id=request_id(key),
        ),
        principal,
    )
    method: ppb.PaymentMethod = answer.payment_method
    return method


async def pay_invoice(
    request: Request, principal: Principal, invoice_id: str, body: PayIn, key: str | None
) -> ppb.Payment:
    """Charge what the invoice still owes to a card (given now or on file)."""
    invoice = (await owned_invoice(request, principal, invoice_id)).invoice
    if invoice.status not in (ipb.INVOICE_STATUS_OPEN, ipb.INVOICE_STATUS_PARTIALLY_PAID):
        raise GatewayProblem(409, "INVOICE_NOT_PAYABLE", "the invoice has nothing open to pay")
    method_id = body.method_id
    if body.card is not None:
        card_key = f"{key}-card" if key else None
        method = await add_card(request, principal, invoice.account_id, body.card, False, card_key)
        method_id = method.method_id
    answer = await call(
        request,
        clients_of(request).payments.CreatePayment,
        ppb.CreatePaymentRequest(
            account_id=invoice.account_id,
            amount=invoice.amount_due,
            channel=ppb.Channel.CHANNEL_ONLINE_CARD,
            purpose=ppb.PaymentPurpose.PAYMENT_PURPOSE_INVOICE,
            method_id=method_id,
            invoice_ids=[invoice_id],
            request_id=request_id(key),
        ),
        principal,
    )
    payment: ppb.Payment = answer.payment
    return payment


@router.post(
    "/invoices/{invoice_id}/pay",
    response_model=model_for(ppb.Payment.DESCRIPTOR),
    tags=["payments"],
)
async def pay(
    request: Request,
    principal: SelfWriter,
    invoice_id: Id,
    body: PayIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Pay what the invoice still owes; the payment's ``state`` says how it went."""
    payment = await pay_invoice(request, principal, invoice_id, body, idempotency_key)
    return JsonBody(to_json(payment))


@router.get(
    "/accounts/{account_id}/payment-methods",
    response_model=model_for(ppb.ListPaymentMethodsResponse.DESCRIPTOR),
    tags=["payments"],
)
async def list_payment_methods(
    request: Request, principal: SelfReader, account_id: Id
) -> JSONResponse:
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).payments.ListPaymentMethods,
        ppb.ListPaymentMethodsRequest(account_id=account_id),
        principal,
    )
    return JsonBody(to_json(answer))


@router.post(
    "/accounts/{account_id}/payment-methods",
    status_code=201,
    response_model=model_for(ppb.PaymentMethod.DESCRIPTOR),
    tags=["payments"],
)
async def add_payment_method(
    request: Request,
    principal: SelfWriter,
    account_id: Id,
    body: CardMethodIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Put a card on file (tokenised by the provider)."""
    method = await add_card(
        request, principal, account_id, body.card, body.make_default, idempotency_key
    )
    return JsonBody(to_json(method), status_code=201)


@router.get(
    "/accounts/{account_id}/payments",
    response_model=page_model("PaymentPage", ppb.Payment.DESCRIPTOR, "payments"),
    tags=["payments"],
)
async def list_payments(
    request: Request,
    principal: SelfReader,
    account_id: Id,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    """The account's payment history (payments, refunds, chargebacks)."""
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).payments.ListPayments,
        ppb.ListPaymentsRequest(account_id=account_id, page_size=page_size, page_token=page_token),
        principal,
    )
    return JsonBody(to_json(answer))


# --- PSP callbacks -----------------------------------------------------------------------
MAX_CALLBACK_BYTES = 1_000_000
# Hop-by-hop and credential headers are not the provider's message: never passed on.
NOT_PASSED = frozenset({"authorization", "cookie", "x-api-key", "connection", "host"})


class CallbackOut(BaseModel):
    applied: bool


@router.post(
    "/psp/{provider}/webhook",
    response_model=CallbackOut,
    responses=openapi_problem_responses(413),
    tags=["payments"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def psp_webhook(request: Request, provider: Literal["sandbox", "stripe"]) -> JSONResponse:
    """A payment provider's result callback (Standard Webhooks signature headers).

    No API key: the callback proves itself by its signature, which payments checks
    with its webhook secret (403 ``CALLBACK_REJECTED`` when it does not
    verify). The body and headers are passed on byte for byte."""
    auth = request.app.state.authenticator
    address = request.client.host if request.client else "?"
    if await auth.limiter.take(f"psp:{address}") > 0:
        raise GatewayProblem(
            429, "RATE_LIMITED", "too many callbacks", headers={"Retry-After": "1"}
        )
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise GatewayProblem(413, "CALLBACK_TOO_LARGE", "a callback is at most 1 MB")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_PASSED}
    answer = await call(
        request,
        clients_of(request).payments.HandleProviderCallback,
        ppb.HandleProviderCallbackRequest(provider=provider, body=body, headers=headers),
        None,
    )
    return JSONResponse({"applied": answer.applied})
