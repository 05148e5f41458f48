"""Self-care (ACC-3): server-rendered pages for a logged-in customer.

Plain HTML forms, no build step and no JavaScript needed: balance and account state,
buckets, subscriptions with plan change and services (add-ons) to add or remove,
usage with an SVG chart of expenses per day. Every page call goes through the same
ownership checks and scope metadata as the JSON API (``gateway.api``). Forms carry
the session's CSRF token; logins are rate limited per login name and per address.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import grpc
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from gateway import api, billing, preferences
from gateway.auth import SESSION_COOKIE, Authenticator, Principal
from gateway.charts import bar_chart
from gateway.clients import scope_metadata
from gateway.i18n import LANGUAGE_NAMES, LANGUAGES, pick_language, status_word, texts
from gateway.problems import GatewayProblem
from gateway.proto_json import money_to_json
from gateway.ratelimit import RateLimiter
from gateway.store import CredentialStore
from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.charging.v1 import charging_pb2 as cpb
from reckon.invoicing.v1 import invoicing_pb2 as ipb
from reckon.payments.v1 import payments_pb2 as ppb
from reckon.rating.v1 import rating_pb2 as rpb
from services.common.money import currency_exponent, is_known_currency

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/selfcare", include_in_schema=False)
LANG_COOKIE = "reckon_lang"
USAGE_DAYS = 31


def render(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    lang = pick_language(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        context.get("customer_language"),
        request.headers.get("accept-language"),
    )
    response = templates.TemplateResponse(
        request,
        name,
        {
            "t": texts(lang),
            "st": lambda word: status_word(lang, word),
            "lang": lang,
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def login_page(request: Request, *, status: int = 200, failed: bool = False) -> HTMLResponse:
    return render(request, "login.html", {"failed": failed}, status=status)


async def customer(request: Request) -> Principal:
    """The logged-in customer (session cookie only); 401 / 403 pages otherwise."""
    auth: Authenticator = request.app.state.authenticator
    token = request.cookies.get(SESSION_COOKIE)
    principal = await auth.principal(None, token) if token else None
    if principal is None:
        raise GatewayProblem(401, "UNAUTHENTICATED", "log in first")
    request.state.principal = principal
    if await auth.limiter.take(principal.audit_name) > 0:
        raise GatewayProblem(429, "RATE_LIMITED", "too many requests", headers={"Retry-After": "1"})
    if principal.customer_id is None:
        raise GatewayProblem(403, "SCOPE_MISSING", "self-care is for customer logins")
    if request.method == "POST":
        form = await request.form()
        sent = str(form.get("csrf_token", ""))
        if principal.csrf_token is None or sent != principal.csrf_token:
            raise GatewayProblem(403, "CSRF_TOKEN_INVALID", "the form is stale: reload the page")
    return principal


Customer = Annotated[Principal, Depends(customer)]


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    login: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    limiter: RateLimiter = request.app.state.login_limiter
    address = request.client.host if request.client else "?"
    over_login = await limiter.take(f"login:{login.strip().lower()}") > 0
    if over_login or await limiter.take(f"ip:{address}") > 0:
        raise GatewayProblem(429, "RATE_LIMITED", "too many login attempts; wait a minute")
    store: CredentialStore = request.app.state.store
    found = await asyncio.to_thread(store.verify_password, login, password)
    if found is None:
        return login_page(request, status=401, failed=True)
    settings = request.app.state.settings
    token, _ = await asyncio.to_thread(store.open_session, found, settings.session_hours)
    target = "/selfcare/" if found.customer_id is not None else "/reports"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        store: CredentialStore = request.app.state.store
        await asyncio.to_thread(store.close_session, token)
    response = RedirectResponse("/selfcare/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _money(message: Any) -> str:
    """For people: at least the currency's minor digits (25.10 EUR), never fewer digits
    than the exact amount has (0.125 EUR stays 0.125)."""
    value = money_to_json(message)
    amount, currency = Decimal(value["amount"]), value["currency_code"]
    if is_known_currency(currency):
        places = currency_exponent(currency)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent < places:
            amount = amount.quantize(Decimal(1).scaleb(-places))
    return f"{amount} {currency}"


def _quantity(quantity: cpb.Quantity) -> str:
    kind = quantity.WhichOneof("value")
    if kind == "money":
        return _money(quantity.money)
    if kind is None:
        return "-"
    unit = {"time_seconds": "s", "volume_bytes": "B"}.get(kind, quantity.unit_name or "unit")
    return f"{getattr(quantity, kind)} {unit}"


def _day(value: Any) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}" if value.year else ""


def _short_enum(name: str) -> str:
    for prefix in ("ACCOUNT_STATE_", "SUBSCRIPTION_STATE_", "BILLING_MODE_"):
        name = name.removeprefix(prefix)
    return name.lower()


async def _dashboard_data(
    request: Request, principal: Principal, account_id: str | None
) -> dict[str, Any]:
    clients = api.clients_of(request)
    scope = scope_metadata(principal)
    customer_id = principal.customer_id or ""
    got = await clients.accounts.GetCustomer(
        apb.GetCustomerRequest(customer_id=customer_id), metadata=scope, timeout=clients.timeout
    )
    listed = await clients.accounts.ListAccounts(
        apb.ListAccountsRequest(customer_id=customer_id, page_size=100),
        metadata=scope,
        timeout=clients.timeout,
    )
    accounts = list(listed.accounts)
    account = next((a for a in accounts if a.account_id == account_id), None)
    if account_id and account is None:
        raise GatewayProblem(404, "ACCOUNT_NOT_FOUND", "account not found")
    account = account or (accounts[0] if accounts else None)
    data: dict[str, Any] = {
        "customer": got.customer,
        "customer_language": got.customer.language_code,
        "accounts": accounts,
        "account": account,
        "csrf_token": principal.csrf_token,
    }
    if account is None:
        return data
    now = datetime.now(UTC)
    since = (now - timedelta(days=USAGE_DAYS - 1)).replace(hour=0, minute=0, second=0)
    balance_call = clients.charging.GetBalance(
        cpb.GetBalanceRequest(account_id=account.account_id),
        metadata=scope,
        timeout=clients.timeout,
    )
    subs_call = clients.accounts.ListSubscriptions(
        apb.ListSubscriptionsRequest(
            account_id=account.account_id,
            state=apb.SubscriptionState.SUBSCRIPTION_STATE_ACTIVE,
            page_size=100,
        ),
        metadata=scope,
        timeout=clients.timeout,
    )
    usage_call = clients.rating.ListRatedUsage(
        rpb.ListRatedUsageRequest(
            account_id=account.account_id, page_size=1000, period_start=api._stamp(since)
        ),
        metadata=scope,
        timeout=clients.timeout,
    )
    invoices_call = clients.invoicing.SearchInvoices(
        ipb.SearchInvoicesRequest(
            customer_id=customer_id, account_id=account.account_id, page_size=24
        ),
        metadata=scope,
        timeout=clients.timeout,
    )
    payments_call = clients.payments.ListPayments(
        ppb.ListPaymentsRequest(account_id=account.account_id, page_size=50),
        metadata=scope,
        timeout=clients.timeout,
    )
    plans_call = clients.rating.ListPlans(
        rpb.ListPlansRequest(page_size=200), metadata=scope, timeout=clients.timeout
    )
    try:
        balance = await balance_call
    except grpc.aio.AioRpcError as exc:  # charging has not heard of the account yet
        if exc.code() is not grpc.StatusCode.NOT_FOUND:
            raise
        balance = None
    subs, usage, plans = await asyncio.gather(subs_call, usage_call, plans_call)
    try:
        invoices = list((await invoices_call).invoices)
    except grpc.aio.AioRpcError as exc:  # no invoicing in this suite: the page goes on
        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
            raise
        invoices = []
    try:
        payments = list((await payments_call).payments)
    except grpc.aio.AioRpcError as exc:  # no payments service in this suite
        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
            raise
        payments = []
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    currency = account.currency_code
    for line in usage.rated_usage:
        day = line.event_time.ToDatetime(tzinfo=UTC).date().isoformat()
        per_day[day] += Decimal(money_to_json(line.amount)["amount"])
    days = [(since + timedelta(days=i)).date().isoformat() for i in range(USAGE_DAYS)]
    data.update(
        balance=balance,
        buckets=[
            {
                "label": b.bucket.label or b.bucket.unit_name or b.bucket.currency_code,
                "main": b.bucket.main,
                "available": _quantity(b.available),
                "reserved": _quantity(b.reserved) if b.HasField("reserved") else "-",
                "valid_until": b.bucket.valid_until.ToDatetime(tzinfo=UTC).date().isoformat()
                if b.bucket.HasField("valid_until")
                else "",
            }
            for b in (balance.buckets if balance is not None else [])
        ],
        state=_short_enum(apb.AccountState.Name(account.state)),
        payments=[
            {
                "when": p.create_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M"),
                "amount": _money(p.amount),
                "channel": ppb.Channel.Name(p.channel).removeprefix("CHANNEL_").lower(),
                "state": ppb.PaymentState.Name(p.state).removeprefix("PAYMENT_STATE_").lower(),
                "decline": p.decline_code,
            }
            for p in reversed(payments)
        ],
        invoices=[
            {
                "invoice_id": i.invoice_id,
                "number": i.number,
                "issued": _day(i.issue_date),
                "due": _day(i.due_date),
                "status": ipb.InvoiceStatus.Name(i.status).removeprefix("INVOICE_STATUS_").lower(),
                "total": _money(i.total_gross),
                "amount_due": _money(i.amount_due),
                "payable": i.status in (ipb.INVOICE_STATUS_OPEN, ipb.INVOICE_STATUS_PARTIALLY_PAID),
            }
            for i in invoices
        ],
        subscriptions=list(subs.subscriptions),
        plans=list(plans.plans),
        usage=[
            {
                "when": line.event_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M"),
                "service": line.service,
                "quantity": line.quantity.value,
                "amount": _money(line.amount),
            }
            for line in reversed(usage.rated_usage[-50:])
        ],
        chart=bar_chart(
            [d[5:] for d in days], [per_day[d] for d in days], title="expenses", unit=currency
        ),
    )
    return data


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    principal: Customer,
    account_id: Annotated[str | None, Query(max_length=64)] = None,
    done: Annotated[str | None, Query(max_length=10)] = None,
    payment: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    data, prefs = await asyncio.gather(
        _dashboard_data(request, principal, account_id),
        preferences.page_preferences(request, principal),
    )
    context = {**data, "done": done == "1", "payment": payment, "preferences": prefs}
    return render(
        request, "dashboard.html", {**context, "pref_languages": preferences.LANGUAGE_CHOICES}
    )


def _back(account_id: str) -> RedirectResponse:
    return RedirectResponse(f"/selfcare/?account_id={quote(account_id)}&done=1", status_code=303)


@router.post("/notification-preferences")
async def set_notification_preference(
    request: Request,
    principal: Customer,
    channel: Annotated[str, Form(pattern="^CHANNEL_(EMAIL|SMS)$")],
    account_id: Annotated[str, Form(max_length=64)] = "",
    opted_in: Annotated[bool, Form()] = False,
    opted_out: Annotated[bool, Form()] = False,
    marketing_opted_out: Annotated[bool, Form()] = False,
    language_code: Annotated[str, Form(max_length=35)] = "",
    quiet_start: Annotated[str, Form(max_length=5)] = "",
    quiet_end: Annotated[str, Form(max_length=5)] = "",
    wants_einvoice: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """One channel's choices from the page's form (unticked boxes are not sent: False)."""
    try:
        body = preferences.PreferenceIn.model_validate(
            {
                "channel": channel,
                "opted_in": opted_in,
                "opted_out": opted_out,
                "marketing_opted_out": marketing_opted_out,
                "language_code": language_code,
                "quiet_start": quiet_start,
                "quiet_end": quiet_end,
                "wants_einvoice": wants_einvoice,
            }
        )
    except ValidationError as exc:  # the page's own check, as the API's: a 400, not a 500
        errors = [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{field}: {message}" for field, message in errors)
        raise GatewayProblem(400, "INVALID_ARGUMENT", detail, errors=errors) from None
    await preferences.set_preference(request, principal, principal.customer_id or "", body, None)
    shown = f"account_id={quote(account_id)}&" if account_id else ""
    return RedirectResponse(f"/selfcare/?{shown}done=1#notifications", status_code=303)


@router.post("/subscriptions/{subscription_id}/plan")
async def change_plan(
    request: Request,
    principal: Customer,
    subscription_id: api.Id,
    plan_code: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    subscription = await api.owned_subscription(request, principal, subscription_id)
    clients = api.clients_of(request)
    await clients.accounts.ChangePlan(
        apb.ChangePlanRequest(
            subscription_id=subscription_id,
            plan_code=plan_code,
            timing=apb.ChangeTiming.CHANGE_TIMING_IMMEDIATE,
            request_id=api.request_id(None),
        ),
        metadata=scope_metadata(principal),
        timeout=clients.timeout,
    )
    return _back(subscription.account_id)


@router.post("/subscriptions/{subscription_id}/add-ons")
async def add_add_on(
    request: Request,
    principal: Customer,
    subscription_id: api.Id,
    add_on_code: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    subscription = await api.owned_subscription(request, principal, subscription_id)
    clients = api.clients_of(request)
    await clients.accounts.AddAddOn(
        apb.AddAddOnRequest(
            subscription_id=subscription_id,
            add_on_code=add_on_code.strip(),
            quantity=1,
            request_id=api.request_id(None),
        ),
        metadata=scope_metadata(principal),
        timeout=clients.timeout,
    )
    return _back(subscription.account_id)


@router.post("/subscriptions/{subscription_id}/add-ons/{add_on_code}/remove")
async def remove_add_on(
    request: Request, principal: Customer, subscription_id: api.Id, add_on_code: api.Id
) -> RedirectResponse:
    subscription = await api.owned_subscription(request, principal, subscription_id)
    clients = api.clients_of(request)
    await clients.accounts.RemoveAddOn(
        apb.RemoveAddOnRequest(
            subscription_id=subscription_id,
            add_on_code=add_on_code,
            request_id=api.request_id(None),
        ),
        metadata=scope_metadata(principal),
        timeout=clients.timeout,
    )
    return _back(subscription.account_id)


@router.post("/invoices/{invoice_id}/pay")
async def pay_invoice(
    request: Request,
    principal: Customer,
    invoice_id: api.Id,
    card_number: Annotated[str, Form(max_length=23)],
    exp_month: Annotated[int, Form(ge=1, le=12)],
    exp_year: Annotated[int, Form(ge=2000, le=2100)],
    cvc: Annotated[str, Form(max_length=4)],
) -> RedirectResponse:
    """Pay what the invoice owes with a card; the page then shows the invoice's status."""
    card = billing.CardIn(number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc)
    payment = await billing.pay_invoice(
        request, principal, invoice_id, billing.PayIn(card=card), None
    )
    state = ppb.PaymentState.Name(payment.state).removeprefix("PAYMENT_STATE_").lower()
    return RedirectResponse(
        f"/selfcare/?account_id={quote(payment.account_id)}&done=1&payment={state}",
        status_code=303,
    )
