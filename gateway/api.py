"""The JSON API under ``/v1``: customers, accounts, subscriptions, balances, usage.

Each route names its scope with ``require`` (and whether customers may use it on
their own data). A route is a translation only: JSON -> request message, one or two
gRPC calls, message -> JSON (``proto_json``); errors of the services become problem
details in the app's handler for ``grpc.aio.AioRpcError``.

Ownership for customers is checked twice: here (the account's ``customer_id`` must be
the session's) and by the services, which get ``x-reckon-customer-id`` with every
call made for a customer. Anything a customer does not own answers 404, exactly like
an id that does not exist.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from pydantic import BaseModel, Field

from gateway.auth import Principal, require
from gateway.clients import ServiceClients, scope_metadata
from gateway.problems import GatewayProblem, openapi_problem_responses, operation_id
from gateway.proto_json import JsonBody, model_for, money_from_decimal, page_model, to_json
from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.charging.v1 import charging_pb2 as cpb
from reckon.rating.v1 import rating_pb2 as rpb

PROBLEMS = openapi_problem_responses(400, 401, 403, 404, 409, 429, 503)
router = APIRouter(prefix="/v1", responses=PROBLEMS, generate_unique_id_function=operation_id)

Reader = Annotated[Principal, Depends(require("read"))]
SelfReader = Annotated[Principal, Depends(require("read", self_care=True))]
Writer = Annotated[Principal, Depends(require("write"))]
SelfWriter = Annotated[Principal, Depends(require("write", self_care=True))]
Admin = Annotated[Principal, Depends(require("admin"))]

PageSize = Annotated[int, Query(ge=1, le=1000, description="Items per page (default 50).")]
PageToken = Annotated[
    str, Query(max_length=2000, description="`next_page_token` of the previous page.")
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a POST with the same key to get the first answer again; "
        "passed to the service as its request_id.",
    ),
]
Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def clients_of(request: Request) -> ServiceClients:
    clients: ServiceClients = request.app.state.clients
    return clients


async def call(request: Request, rpc: Any, message: Message, principal: Principal | None) -> Any:
    """One unary call with the caller's scope in its metadata."""
    clients = clients_of(request)
    return await rpc(message, metadata=scope_metadata(principal), timeout=clients.timeout)


def request_id(key: str | None) -> str:
    # Without a key each POST is its own request (no replay), as the header is optional.
    return key if key is not None else f"gw-{uuid.uuid4()}"


def not_found(what: str, reason: str) -> GatewayProblem:
    return GatewayProblem(404, reason, f"{what} not found")


def json_of(message: Message) -> JSONResponse:
    return JsonBody(to_json(message))


async def owned_account(request: Request, principal: Principal, account_id: str) -> apb.Account:
    """The account, if the caller may see it (any, for API clients)."""
    answer = await call(
        request,
        clients_of(request).accounts.GetAccount,
        apb.GetAccountRequest(account_id=account_id),
        principal,
    )
    account: apb.Account = answer.account
    if principal.customer_id is not None and account.customer_id != principal.customer_id:
        raise not_found("account", "ACCOUNT_NOT_FOUND")
    return account


async def check_account(request: Request, principal: Principal, account_id: str) -> None:
    """Customers only: the account must be theirs (API clients are not restricted)."""
    if principal.customer_id is not None:
        await owned_account(request, principal, account_id)


async def owned_subscription(
    request: Request, principal: Principal, subscription_id: str
) -> apb.Subscription:
    answer = await call(
        request,
        clients_of(request).accounts.GetSubscription,
        apb.GetSubscriptionRequest(subscription_id=subscription_id),
        principal,
    )
    subscription: apb.Subscription = answer.subscription
    if principal.customer_id is not None:
        try:
            await owned_account(request, principal, subscription.account_id)
        except GatewayProblem:
            raise not_found("subscription", "SUBSCRIPTION_NOT_FOUND") from None
        except grpc.aio.AioRpcError as exc:  # accounts' own check of a foreign account
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise not_found("subscription", "SUBSCRIPTION_NOT_FOUND") from None
            raise
    return subscription


def _doc(descriptor: Any) -> dict[str, Any]:
    return {"response_model": model_for(descriptor)}


# --- customers -------------------------------------------------------------------------
class CustomerIn(BaseModel):
    display_name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    phone_number: str = Field(default="", max_length=32)
    language_code: str = Field(default="", max_length=35)
    reseller_id: str = Field(default="", max_length=64)
    group_id: str = Field(default="", max_length=64)
    referred_by: str = Field(default="", max_length=16)


@router.get(
    "/customers",
    response_model=page_model("CustomerPage", apb.Customer.DESCRIPTOR, "customers"),
    tags=["customers"],
)
async def list_customers(
    request: Request,
    principal: Reader,
    page_size: PageSize = 50,
    page_token: PageToken = "",
    reseller_id: Annotated[str, Query(max_length=64)] = "",
    group_id: Annotated[str, Query(max_length=64)] = "",
) -> JSONResponse:
    answer = await call(
        request,
        clients_of(request).accounts.ListCustomers,
        apb.ListCustomersRequest(
            page_size=page_size, page_token=page_token, reseller_id=reseller_id, group_id=group_id
        ),
        principal,
    )
    return json_of(answer)


@router.post("/customers", status_code=201, tags=["customers"], **_doc(apb.Customer.DESCRIPTOR))
async def create_customer(
    request: Request, principal: Writer, body: CustomerIn, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    answer = await call(
        request,
        clients_of(request).accounts.CreateCustomer,
        apb.CreateCustomerRequest(
            customer=apb.Customer(**body.model_dump()), request_id=request_id(idempotency_key)
        ),
        principal,
    )
    return JsonBody(to_json(answer.customer), status_code=201)


@router.get("/customers/{customer_id}", tags=["customers"], **_doc(apb.Customer.DESCRIPTOR))
async def get_customer(request: Request, principal: SelfReader, customer_id: Id) -> JSONResponse:
    if principal.customer_id is not None and customer_id != principal.customer_id:
        raise not_found("customer", "CUSTOMER_NOT_FOUND")
    answer = await call(
        request,
        clients_of(request).accounts.GetCustomer,
        apb.GetCustomerRequest(customer_id=customer_id),
        principal,
    )
    return json_of(answer.customer)


# --- accounts --------------------------------------------------------------------------
class AccountIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    display_name: str = Field(default="", max_length=200)
    currency_code: str = Field(min_length=3, max_length=3, examples=["EUR"])
    time_zone: str = Field(default="UTC", max_length=64, examples=["Europe/Amsterdam"])
    bill_cycle_day: int = Field(default=1, ge=1, le=28)
    tax_region: str = Field(default="", max_length=10)
    payment_terms_days: int = Field(default=14, ge=0, le=365)
    payment_mode: Literal["PAYMENT_MODE_PREPAID", "PAYMENT_MODE_POSTPAID", "PAYMENT_MODE_HYBRID"]
    credit_limit: Decimal | None = Field(
        default=None, ge=0, max_digits=20, decimal_places=9, description="In currency_code."
    )
    parent_account_id: str = Field(default="", max_length=64)


@router.get(
    "/accounts",
    response_model=page_model("AccountPage", apb.Account.DESCRIPTOR, "accounts"),
    tags=["accounts"],
)
async def list_accounts(
    request: Request,
    principal: SelfReader,
    customer_id: Annotated[str, Query(max_length=64)] = "",
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    if principal.customer_id is not None:
        if customer_id and customer_id != principal.customer_id:
            raise not_found("customer", "CUSTOMER_NOT_FOUND")
        customer_id = principal.customer_id
    answer = await call(
        request,
        clients_of(request).accounts.ListAccounts,
        apb.ListAccountsRequest(
            customer_id=customer_id, page_size=page_size, page_token=page_token
        ),
        principal,
    )
    return json_of(answer)


@router.post("/accounts", status_code=201, tags=["accounts"], **_doc(apb.Account.DESCRIPTOR))
async def create_account(
    request: Request, principal: Writer, body: AccountIn, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    fields = body.model_dump(exclude={"credit_limit", "payment_mode"})
    account = apb.Account(**fields, payment_mode=apb.PaymentMode.Value(body.payment_mode))
    if body.credit_limit is not None:
        account.credit_limit.CopyFrom(money_from_decimal(body.credit_limit, body.currency_code))
    answer = await call(
        request,
        clients_of(request).accounts.CreateAccount,
        apb.CreateAccountRequest(account=account, request_id=request_id(idempotency_key)),
        principal,
    )
    return JsonBody(to_json(answer.account), status_code=201)


@router.get("/accounts/{account_id}", tags=["accounts"], **_doc(apb.Account.DESCRIPTOR))
async def get_account(request: Request, principal: SelfReader, account_id: Id) -> JSONResponse:
    return JsonBody(to_json(await owned_account(request, principal, account_id)))


@router.get(
    "/accounts/{account_id}/subscriptions",
    response_model=page_model("SubscriptionPage", apb.Subscription.DESCRIPTOR, "subscriptions"),
    tags=["subscriptions"],
)
async def list_subscriptions(
    request: Request,
    principal: SelfReader,
    account_id: Id,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).accounts.ListSubscriptions,
        apb.ListSubscriptionsRequest(
            account_id=account_id, page_size=page_size, page_token=page_token
        ),
        principal,
    )
    return json_of(answer)


@router.get(
    "/accounts/{account_id}/balance",
    tags=["balances"],
    **_doc(cpb.GetBalanceResponse.DESCRIPTOR),
)
async def get_balance(request: Request, principal: SelfReader, account_id: Id) -> JSONResponse:
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).charging.GetBalance,
        cpb.GetBalanceRequest(account_id=account_id),
        principal,
    )
    return json_of(answer)


@router.get(
    "/accounts/{account_id}/ledger",
    response_model=page_model("LedgerPage", cpb.LedgerEntry.DESCRIPTOR, "entries"),
    tags=["balances"],
)
async def list_ledger(
    request: Request,
    principal: SelfReader,
    account_id: Id,
    bucket_id: Annotated[str, Query(max_length=64)] = "",
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).charging.ListLedgerEntries,
        cpb.ListLedgerEntriesRequest(
            account_id=account_id, bucket_id=bucket_id, page_size=page_size, page_token=page_token
        ),
        principal,
    )
    return json_of(answer)


def _stamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


@router.get(
    "/accounts/{account_id}/usage",
    response_model=page_model("RatedUsagePage", rpb.RatedUsage.DESCRIPTOR, "rated_usage"),
    tags=["usage"],
)
async def list_usage(
    request: Request,
    principal: SelfReader,
    account_id: Id,
    period_start: Annotated[datetime | None, Query(description="RFC 3339, inclusive")] = None,
    period_end: Annotated[datetime | None, Query(description="RFC 3339, exclusive")] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> JSONResponse:
    await check_account(request, principal, account_id)
    answer = await call(
        request,
        clients_of(request).rating.ListRatedUsage,
        rpb.ListRatedUsageRequest(
            account_id=account_id,
            period_start=_stamp(period_start),
            period_end=_stamp(period_end),
            page_size=page_size,
            page_token=page_token,
        ),
        principal,
    )
    return json_of(answer)


class TopUpIn(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=20, decimal_places=9, examples=["10.00"])
    currency_code: str = Field(min_length=3, max_length=3, examples=["EUR"])
    reference: str = Field(default="", max_length=200)


@router.post(
    "/accounts/{account_id}/top-ups",
    tags=["balances"],
    **_doc(cpb.TopUpResponse.DESCRIPTOR),
)
async def top_up(
    request: Request,
    principal: Writer,
    account_id: Id,
    body: TopUpIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    amount = cpb.Quantity(money=money_from_decimal(body.amount, body.currency_code))
    answer = await call(
        request,
        clients_of(request).charging.TopUp,
        cpb.TopUpRequest(
            account_id=account_id,
            amount=amount,
            reference=body.reference,
            request_id=request_id(idempotency_key),
        ),
        principal,
    )
    return json_of(answer)


# --- subscriptions ---------------------------------------------------------------------
class SubscriptionIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=64)
    plan_code: str = Field(min_length=1, max_length=64)


class PlanChangeIn(BaseModel):
    plan_code: str = Field(min_length=1, max_length=64)
    timing: Literal["CHANGE_TIMING_IMMEDIATE", "CHANGE_TIMING_END_OF_CYCLE"] = (
        "CHANGE_TIMING_IMMEDIATE"
    )


class AddOnIn(BaseModel):
    add_on_code: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=10000)


SUBSCRIPTION_DOC = _doc(apb.Subscription.DESCRIPTOR)


@router.post("/subscriptions", status_code=201, tags=["subscriptions"], **SUBSCRIPTION_DOC)
async def create_subscription(
    request: Request,
    principal: Writer,
    body: SubscriptionIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    answer = await call(
        request,
        clients_of(request).accounts.CreateSubscription,
        apb.CreateSubscriptionRequest(
            subscription=apb.Subscription(account_id=body.account_id, plan_code=body.plan_code),
            request_id=request_id(idempotency_key),
        ),
        principal,
    )
    return JsonBody(to_json(answer.subscription), status_code=201)


@router.get("/subscriptions/{subscription_id}", tags=["subscriptions"], **SUBSCRIPTION_DOC)
async def get_subscription(
    request: Request, principal: SelfReader, subscription_id: Id
) -> JSONResponse:
    return JsonBody(to_json(await owned_subscription(request, principal, subscription_id)))


@router.post(
    "/subscriptions/{subscription_id}/change-plan", tags=["subscriptions"], **SUBSCRIPTION_DOC
)
async def change_plan(
    request: Request,
    principal: SelfWriter,
    subscription_id: Id,
    body: PlanChangeIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    await owned_subscription(request, principal, subscription_id)
    answer = await call(
        request,
        clients_of(request).accounts.ChangePlan,
        apb.ChangePlanRequest(
            subscription_id=subscription_id,
            plan_code=body.plan_code,
            timing=apb.ChangeTiming.Value(body.timing),
            request_id=request_id(idempotency_key),
        ),
        principal,
    )
    return json_of(answer.subscription)


@router.post("/subscriptions/{subscription_id}/add-ons", tags=["subscriptions"], **SUBSCRIPTION_DOC)
async def add_add_on(
    request: Request,
    principal: SelfWriter,
    subscription_id: Id,
    body: AddOnIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    await owned_subscription(request, principal, subscription_id)
    answer = await call(
        request,
        clients_of(request).accounts.AddAddOn,
        apb.AddAddOnRequest(
            subscription_id=subscription_id,
            add_on_code=body.add_on_code,
            quantity=body.quantity,
            request_id=request_id(idempotency_key),
        ),
        principal,
    )
    return json_of(answer.subscription)


@router.post(
    "/subscriptions/{subscription_id}/add-ons/{add_on_code}/remove",
    tags=["subscriptions"],
    **SUBSCRIPTION_DOC,
)
async def remove_add_on(
    request: Request,
    principal: SelfWriter,
    subscription_id: Id,
    add_on_code: Id,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    await owned_subscription(request, principal, subscription_id)
    answer = await call(
        request,
        clients_of(request).accounts.RemoveAddOn,
        apb.RemoveAddOnRequest(
            subscription_id=subscription_id,
            add_on_code=add_on_code,
            request_id=request_id(idempotency_key),
        ),
        principal,
    )
    return json_of(answer.subscription)


# --- catalog and audit -----------------------------------------------------------------
@router.get(
    "/plans",
    response_model=page_model("PlanPage", rpb.PlanSummary.DESCRIPTOR, "plans"),
    tags=["catalog"],
)
async def list_plans(
    request: Request, principal: SelfReader, page_size: PageSize = 50, page_token: PageToken = ""
) -> JSONResponse:
    answer = await call(
        request,
        clients_of(request).rating.ListPlans,
        rpb.ListPlansRequest(page_size=page_size, page_token=page_token),
        principal,
    )
    return json_of(answer)


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    principal: str
    customer_id: str | None
    method: str
    path: str
    status: int
    request_id: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_page_token: str


@router.get("/audit-log", response_model=AuditPage, tags=["audit"])
async def audit_log(
    request: Request, principal: Admin, page_size: PageSize = 50, page_token: PageToken = ""
) -> JSONResponse:
    if page_token and not page_token.isdigit():
        raise GatewayProblem(
            400,
            "INVALID_ARGUMENT",
            "page_token: is not a token this service issued",
            errors=[("page_token", "is not a token this service issued")],
        )
    after = int(page_token or 0)
    store = request.app.state.store
    rows = await asyncio.to_thread(store.audit_page, after, page_size + 1)
    entries = [
        {
            "seq": r.seq,
            "at": r.at.isoformat().replace("+00:00", "Z"),
            "principal": r.principal,
            "customer_id": r.customer_id,
            "method": r.method,
            "path": r.path,
            "status": r.status,
            "request_id": r.request_id,
        }
        for r in rows[:page_size]
    ]
    token = str(rows[page_size - 1].seq) if len(rows) > page_size else ""
    return JsonBody({"entries": entries, "next_page_token": token})
