"""The gateway's one composition root: ``create_app`` wires settings, store, clients.

Routes: ``/v1/...`` (JSON API, ``gateway.api``), ``/v1/reports/...`` and
``/reports`` (``gateway.reports``), ``/selfcare/...`` (``gateway.selfcare``),
``/oauth/token`` (OAuth2 client credentials), ``/openapi.json`` (OpenAPI 3.1),
``/docs`` (Swagger UI served from the vendored ``swagger-ui-bundle-v2``: no CDN),
``/healthz``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import grpc
import swagger_ui_bundle
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import api, billing, preferences, reports, selfcare
from gateway.auth import Authenticator, document_security
from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.problems import (
    GatewayProblem,
    from_rpc_error,
    operation_id,
    problem_response,
)
from gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from gateway.store import CredentialStore
from gateway.tracing import ServerSpanMiddleware
from services.common.redis_kit import connect

log = logging.getLogger("gateway")
# FastAPI releases with their own OpenTelemetry support would add a second server span
# (and a span per dependency and per serialisation) once an SDK is installed: the
# gateway's ServerSpanMiddleware is the one (ADR 0076). Older releases have no such
# argument.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditMiddleware:
    """Writes one audit row per write (any unsafe method), after its answer, whoever
    made it and whatever the outcome: refused writes are as interesting as done ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state") or {}
            principal = state.get("principal")
            headers = dict(scope.get("headers") or [])
            key = headers.get(b"idempotency-key")
            client = scope.get("client")
            store: CredentialStore | None = getattr(scope["app"].state, "store", None)
            if store is not None:
                await asyncio.to_thread(
                    store.audit,
                    principal=principal.audit_name if principal else "anonymous",
                    customer_id=principal.customer_id if principal else None,
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    request_id=key.decode(errors="replace")[:128] if key else None,
                    remote=f"{client[0]}" if client else None,
                )


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    error: str
    error_description: str = ""


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        # ("body", "plan_code") -> "plan_code"; ("header", "Idempotency-Key") stays readable.
        path = ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc)
        errors.append((path or "body", str(error.get("msg", "is invalid"))))
    detail = "; ".join(f"{f}: {d}" for f, d in errors)
    return problem_response(400, "INVALID_ARGUMENT", detail, errors=errors)


def _is_page(request: Request) -> bool:
    """HTML pages answer errors as pages (401: the login form), the API as problems."""
    return request.url.path.startswith(("/selfcare", "/reports"))


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(
            CredentialStore.open,
            settings.effective_database_url,
            settings.effective_database_schema,
            migrate=settings.migrate_on_start,
        )
        clients = ServiceClients.open(
            accounts=settings.accounts_addr,
            rating=settings.rating_addr,
            charging=settings.charging_addr,
            invoicing=settings.invoicing_addr,
            payments=settings.payments_addr,
            notifications=settings.notifications_addr,
            token=settings.service_token.get_secret_value(),
            timeout=settings.call_timeout_seconds,
        )
        app.state.store = store
        app.state.clients = clients
        redis = connect(settings.redis_url) if settings.rate_limit_store == "redis" else None

        def limiter(name: str, per_minute: int) -> RateLimiter:
            if redis is None:
                return MemoryRateLimiter(per_minute)
            return RedisRateLimiter(redis, name, per_minute)

        app.state.authenticator = Authenticator(
            store,
            jwt_secret=settings.effective_jwt_secret,
            token_minutes=settings.access_token_minutes,
            limiter=limiter("requests", settings.rate_limit_per_minute),
        )
        app.state.login_limiter = limiter("logins", settings.login_attempts_per_minute)
        try:
            yield
        finally:
            if redis is not None:
                await redis.aclose()
            await clients.close()
            store.engine.dispose()

    app = FastAPI(
        title="Reckon gateway",
        version="1",
        summary="HTTP/JSON API of the Reckon charging and billing suite",
        description=(
            "Customers, accounts, subscriptions, balances, usage and reports. Money is "
            "`{currency_code, amount}` with `amount` an exact decimal string. Errors are "
            "RFC 9457 problem details (`application/problem+json`) with the service's "
            "`reason` and the bad `errors[].field`. Lists page with `page_size` and "
            "`page_token` (the previous page's `next_page_token`). Send `Idempotency-Key` "
            "on POSTs to make retries safe."
        ),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    app.add_middleware(AuditMiddleware)
    # Outermost: one server span per request (not for probes and static files), parent
    # of the client spans of the service calls it makes (gateway.clients; ADR 0076).
    app.add_middleware(ServerSpanMiddleware)

    @app.exception_handler(GatewayProblem)
    async def _gateway_problem(request: Request, exc: GatewayProblem) -> Response:
        if _is_page(request):
            if exc.status == 401:
                return selfcare.login_page(request, status=401)
            context = {"status": exc.status, "detail": exc.detail, "reason": exc.reason}
            return selfcare.render(request, "error.html", context, status=exc.status)
        return problem_response(
            exc.status, exc.reason, exc.detail, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
        if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            log.warning("%s %s: %s %s", request.method, request.url.path, exc.code(), exc.details())
        answer = from_rpc_error(exc)
        if _is_page(request):
            body = json.loads(bytes(answer.body))
            context = {"status": body["status"], "detail": body["detail"], "reason": body["reason"]}
            return selfcare.render(request, "error.html", context, status=answer.status_code)
        return answer

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/oauth/token":  # OAuth2 clients expect RFC 6749's shape
            problem = json.loads(bytes(_validation_problem(exc).body))
            return JSONResponse(
                {"error": "invalid_request", "error_description": problem["detail"]},
                status_code=400,
            )
        return _validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        reason = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return problem_response(exc.status_code, reason, str(exc.detail))

    @app.post(
        "/oauth/token",
        response_model=TokenOut,
        responses={400: {"model": OAuthError}, 401: {"model": OAuthError}},
        tags=["auth"],
    )
    async def oauth_token(
        request: Request,
        grant_type: Annotated[Literal["client_credentials"], Form()],
        client_id: Annotated[str, Form(min_length=1, max_length=64)],
        client_secret: Annotated[str, Form(min_length=1, max_length=200)],
        scope: Annotated[str, Form(max_length=100)] = "",
    ) -> JSONResponse:
        """OAuth2 client credentials (RFC 6749 4.4): an access token for an API client."""
        auth: Authenticator = request.app.state.authenticator
        if await auth.limiter.take(f"token:{client_id}") > 0:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "too many attempts"},
                status_code=400,
            )
        client = await auth.client_from_key(f"{client_id}.{client_secret}")
        if client is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        wanted = frozenset(scope.split()) if scope else client.scopes
        if not wanted <= client.scopes:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token, expires_in = auth.issue_token(client, wanted)
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": " ".join(sorted(wanted)),
            },
            headers={"Cache-Control": "no-store"},
        )

    for router in (api.router, billing.router, preferences.router, reports.router):
        app.router.routes.extend(router.routes)
    app.include_router(reports.pages)
    app.include_router(selfcare.router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/selfcare/", status_code=303)

    # Routes outside the document after the API: the router tries routes in order, so
    # the API's requests no longer pass probes, docs and static mounts first (ADR 0076).
    # (``/oauth/token`` stays first: the document lists paths in route order.)
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Reckon gateway API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    app.mount(
        "/static/swagger",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger",
    )
    app.mount("/static/gateway", StaticFiles(directory=selfcare.STATIC_DIR), name="gateway-static")

    # Validation errors answer 400 problem details (documented on every route), not
    # FastAPI's default 422 shape: drop the 422 entries so the document says what happens.
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            document_security(schema, app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
