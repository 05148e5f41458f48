"""Who is calling, what they may do, and how often (ADR 0045).

Three kinds of principal:
- an API client (CRM/ERP) presenting its API key ``<client_id>.<secret>`` as
  ``Authorization: Bearer`` (or ``X-API-Key``), or an OAuth2 access token (a JWT the
  gateway issued at ``/oauth/token`` for the client-credentials grant);
- an operator logged in to the web pages (a login without a customer, with scopes);
- a customer logged in to self-care, whose session cookie is bound to one customer id.

Scopes: ``read``, ``write``, ``admin`` (admin implies the other two). A route names
the scope it needs and whether customers may use it (then on their own data only:
the gateway checks ownership AND sends ``x-reckon-customer-id`` to the services,
which check again). Unauthenticated is 401, authenticated without the scope 403.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from fastapi.security.base import SecurityBase

from gateway.problems import GatewayProblem
from gateway.ratelimit import RateLimiter
from gateway.store import ApiClient, CredentialStore, sha256_hex

SESSION_COOKIE = "reckon_session"
CSRF_HEADER = "X-CSRF-Token"
JWT_ISSUER = "reckon-gateway"
JWT_AUDIENCE = "reckon-api"
Scope = Literal["read", "write", "admin"]
# How long a verified API key is believed without reading the table again: a disabled
# key stops working within this time (the price of not hitting SQL on every request).
KEY_CACHE_SECONDS = 30.0

bearer_scheme = HTTPBearer(
    auto_error=False, description="API key `<client_id>.<secret>` or an OAuth2 access token"
)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)
session_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


@dataclass(frozen=True)
class Principal:
    kind: Literal["client", "operator", "customer"]
    name: str
    scopes: frozenset[str]
    customer_id: str | None = None
    csrf_token: str | None = None

    def has(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def audit_name(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class _KnownKey:
    """A verified API key: the digest of its secret, its client and its principal, built
    once per key and cache period instead of once per request."""

    digest: str
    client: ApiClient
    principal: Principal
    expires: float


class Authenticator:
    def __init__(
        self,
        store: CredentialStore,
        *,
        jwt_secret: bytes,
        token_minutes: int,
        limiter: RateLimiter,
    ) -> None:
        self.store = store
        self._secret = jwt_secret
        self._token_minutes = token_minutes
        self.limiter = limiter
        self._keys: dict[str, _KnownKey] = {}

    # --- API keys and OAuth2 ------------------------------------------------------
    async def _known_key(self, key: str) -> _KnownKey | None:
        client_id, sep, secret = key.partition(".")
        if not sep or not client_id.startswith("cli_") or not secret:
            return None
        cached = self._keys.get(client_id)
        # Only the secret's digest is kept in memory, compared in constant time.
        digest = sha256_hex(secret)
        if cached is not None and cached.expires > time.monotonic():
            return cached if hmac.compare_digest(cached.digest, digest) else None
        client = await asyncio.to_thread(self.store.verify_client, client_id, secret)
        if client is None:
            return None
        known = _KnownKey(
            digest,
            client,
            Principal("client", client.client_id, client.scopes),
            time.monotonic() + KEY_CACHE_SECONDS,
        )
        self._keys[client_id] = known
        return known

    async def client_from_key(self, key: str) -> ApiClient | None:
        known = await self._known_key(key)
        return None if known is None else known.client

    def issue_token(self, client: ApiClient, scopes: frozenset[str]) -> tuple[str, int]:
        now = datetime.now(UTC)
        lifetime = timedelta(minutes=self._token_minutes)
        claims = {
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "sub": client.client_id,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), int(lifetime.total_seconds())

    def client_from_token(self, token: str) -> Principal | None:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=JWT_AUDIENCE,
                issuer=JWT_ISSUER,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.InvalidTokenError:
            return None
        scopes = frozenset(str(claims.get("scope", "")).split())
        return Principal("client", str(claims["sub"]), scopes)

    # --- resolution ---------------------------------------------------------------
    async def principal(self, presented: str | None, session_token: str | None) -> Principal | None:
        """The caller of an API key or access token (``presented``), else of a session."""
        if presented:
            if presented.count(".") == 2:  # a JWT: header.claims.signature
                return self.client_from_token(presented)
            known = await self._known_key(presented)
            return None if known is None else known.principal
        if session_token:
            session = await asyncio.to_thread(self.store.session, session_token)
            if session is None:
                return None
            login = session.login
            if login.customer_id is not None:
                return Principal(
                    "customer",
                    login.login,
                    frozenset({"read", "write"}),
                    login.customer_id,
                    session.csrf_token,
                )
            return Principal("operator", login.login, login.scopes, None, session.csrf_token)
        return None

    async def authorize(self, request: Request, scope: Scope, self_care: bool) -> Principal:
        """The caller of ``request``, who must hold ``scope`` (customers only if
        ``self_care``), within its rate: else 401, 429 or 403 as a problem."""
        principal = await self.principal(*credentials(request))
        if principal is None:
            raise GatewayProblem(
                401,
                "UNAUTHENTICATED",
                "send an API key or access token as 'Authorization: Bearer', or log in",
                headers={"WWW-Authenticate": 'Bearer realm="reckon"'},
            )
        request.state.principal = principal
        wait = await self.limiter.take(principal.audit_name)
        if wait > 0:
            raise GatewayProblem(
                429,
                "RATE_LIMITED",
                f"too many requests from {principal.audit_name}",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if principal.kind == "customer":
            if not self_care:
                raise GatewayProblem(403, "SCOPE_MISSING", "not available to customer logins")
        elif not principal.has(scope):
            raise GatewayProblem(403, "SCOPE_MISSING", f"this needs the '{scope}' scope")
        # Only a session's principal has a CSRF token: cookie-authenticated writes must
        # prove they come from our own pages (a key or token in a header cannot be forged
        # by another site).
        if principal.csrf_token is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
                raise GatewayProblem(403, "CSRF_TOKEN_INVALID", f"send the {CSRF_HEADER} header")
        return principal


def credentials(request: Request) -> tuple[str | None, str | None]:
    """What the caller presents, read as the three security schemes read it: the
    ``Authorization: Bearer`` credentials (scheme case-insensitive), else ``X-API-Key``;
    the session cookie."""
    headers = request.headers
    presented: str | None = None
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            presented = value
    if presented is None:
        presented = headers.get("x-api-key") or None
    session_token = None if presented else request.cookies.get(SESSION_COOKIE) or None
    return presented, session_token


def _authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


def require(scope: Scope, *, self_care: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``scope``; customers only if ``self_care``.

    One dependency on the request alone rather than one per security scheme: FastAPI
    resolved each scheme as its own dependency on every request (most of the gateway's
    dependency resolution; ADR 0076). The schemes still document the operations:
    ``document_security`` adds them to the OpenAPI document as FastAPI did.
    """

    async def dependency(request: Request) -> Principal:
        return await _authenticator(request).authorize(request, scope, self_care)

    dependency.__reckon_scope__ = (scope, self_care)  # type: ignore[attr-defined]
    return dependency


SECURITY_SCHEMES: tuple[SecurityBase, ...] = (bearer_scheme, api_key_scheme, session_scheme)


def _guarded(dependant: Any) -> bool:
    stack = list(dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if getattr(dependency.call, "__reckon_scope__", None) is not None:
            return True
        stack.extend(dependency.dependencies)
    return False


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI keeps an included router as one entry
            yield from _api_routes(included.routes)


def document_security(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    """Every operation guarded by ``require`` accepts any of the three schemes: what
    FastAPI wrote when they were dependencies (``security`` right after
    ``operationId``, the schemes under ``components.securitySchemes``)."""
    guarded = {route.name for route in _api_routes(routes) if _guarded(route.dependant)}
    security: list[dict[str, list[str]]] = [{s.scheme_name: []} for s in SECURITY_SCHEMES]
    used = False
    for path in schema.get("paths", {}).values():
        for method, operation in list(path.items()):
            if operation.get("operationId") not in guarded:
                continue
            used = True
            rebuilt: dict[str, Any] = {}
            for key, value in operation.items():
                rebuilt[key] = value
                if key == ("deprecated" if "deprecated" in operation else "operationId"):
                    rebuilt["security"] = [dict(entry) for entry in security]
            path[method] = rebuilt
    if used:
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
            for scheme in SECURITY_SCHEMES
        }
