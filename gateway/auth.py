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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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
        self._keys: dict[str, tuple[str, ApiClient, float]] = {}

    # --- API keys and OAuth2 ------------------------------------------------------
    async def client_from_key(self, key: str) -> ApiClient | None:
        client_id, sep, secret = key.partition(".")
        if not sep or not client_id.startswith("cli_") or not secret:
            return None
        cached = self._keys.get(client_id)
        digest = sha256_hex(secret)
        if cached is not None and cached[2] > time.monotonic():
            return cached[1] if hmac.compare_digest(cached[0], digest) else None
        client = await asyncio.to_thread(self.store.verify_client, client_id, secret)
        if client is not None:
            self._keys[client_id] = (digest, client, time.monotonic() + KEY_CACHE_SECONDS)
        return client

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
    async def principal(
        self,
        request: Request,
        bearer: HTTPAuthorizationCredentials | None,
        api_key: str | None,
        session_token: str | None,
    ) -> Principal | None:
        presented = bearer.credentials if bearer is not None else api_key
        if presented:
            if presented.count(".") == 2:  # a JWT: header.claims.signature
                return self.client_from_token(presented)
            client = await self.client_from_key(presented)
            return None if client is None else Principal("client", client.client_id, client.scopes)
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


def _authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


def require(scope: Scope, *, self_care: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``scope``; customers only if ``self_care``."""

    async def dependency(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
        api_key: str | None = Depends(api_key_scheme),
        session_token: str | None = Depends(session_scheme),
    ) -> Principal:
        auth = _authenticator(request)
        principal = await auth.principal(request, bearer, api_key, session_token)
        if principal is None:
            raise GatewayProblem(
                401,
                "UNAUTHENTICATED",
                "send an API key or access token as 'Authorization: Bearer', or log in",
                headers={"WWW-Authenticate": 'Bearer realm="reckon"'},
            )
        request.state.principal = principal
        wait = await auth.limiter.take(principal.audit_name)
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
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and principal.csrf_token is not None and bearer is None and api_key is None:
            # Cookie-authenticated writes must prove they come from our own pages.
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
                raise GatewayProblem(403, "CSRF_TOKEN_INVALID", f"send the {CSRF_HEADER} header")
        return principal

    dependency.__reckon_scope__ = (scope, self_care)  # type: ignore[attr-defined]
    return dependency
