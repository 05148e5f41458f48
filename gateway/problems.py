"""RFC 9457 problem details: the one mapping from a gRPC status to an HTTP error.

Every error the gateway answers is ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail``, plus the service's ``ErrorInfo`` ``reason``
and ``domain`` and the ``BadRequest`` field violations as ``errors`` (each with a
``field`` path and a ``description``), so an integrator branches on ``reason``
exactly as a gRPC client would.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from services.common.grpc_errors import ErrorDetails, details_of

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://reckon.dev/problems/"

# gRPC code -> HTTP status (the usual table of google.rpc.Code's documentation).
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    # The gateway's own service token was refused: the gateway is misconfigured, not
    # the caller, so this is a bad gateway rather than a 401.
    grpc.StatusCode.UNAUTHENTICATED: 502,
}
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable content",
    429: "Too many requests",
    499: "Client closed request",
    500: "Internal error",
    501: "Not implemented",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FieldError(BaseModel):
    field: str = Field(examples=["account.bill_cycle_day"])
    description: str


class Problem(BaseModel):
    """RFC 9457 problem details with the service's reason and the bad fields."""

    type: str
    title: str
    status: int
    detail: str = ""
    reason: str = Field(default="", examples=["ACCOUNT_NOT_FOUND"])
    domain: str = ""
    errors: list[FieldError] = Field(default_factory=list)


class GatewayProblem(Exception):
    """An error the gateway itself raises (auth, scope, rate limit, bad header)."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        errors: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail
        self.errors = errors or []
        self.headers = headers or {}


def problem_body(
    status: int,
    reason: str,
    detail: str,
    *,
    domain: str = "reckon.gateway",
    errors: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "type": TYPE_BASE + reason.lower().replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "reason": reason,
        "domain": domain,
        "errors": [{"field": f, "description": d} for f, d in errors or []],
    }


def problem_response(
    status: int,
    reason: str,
    detail: str,
    *,
    domain: str = "reckon.gateway",
    errors: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, reason, detail, domain=domain, errors=errors),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def http_status_of(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


def from_details(details: ErrorDetails) -> JSONResponse:
    status = http_status_of(details.code)
    reason = details.reason or details.code.name
    detail = details.message
    if status >= 500 and details.code is grpc.StatusCode.UNAUTHENTICATED:
        detail = "the gateway could not authenticate to a service"
    return problem_response(
        status,
        reason,
        detail,
        domain=details.domain or "reckon.gateway",
        errors=[(v.field, v.description) for v in details.violations],
    )


def from_rpc_error(error: grpc.RpcError) -> JSONResponse:
    return from_details(details_of(error))


def openapi_problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries documenting problem details for ``statuses``."""
    return {
        status: {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def operation_id(route: APIRoute) -> str:
    """operationId = the route function's name (list_customers, pay...): what client
    generators turn into method names, instead of FastAPI's path-derived ids. Given to
    the app and to every router, since the routers' routes join the app's table as
    they are (``gateway.app``)."""
    return route.name
