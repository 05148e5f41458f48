"""The one error mapping: ``ReckonError`` <-> ``google.rpc.Status``.

Servers never build statuses by hand: the error interceptor in ``grpc_server``
calls ``to_rpc_status`` for every ``ReckonError`` a servicer lets escape.
Clients read the rich details back with ``details_of`` (a failed call) or
``details_of_status`` (an error carried in a streamed answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import ErrorKind, FieldViolation, InvalidArgument, ReckonError

_CODES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: code_pb2.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    ErrorKind.ABORTED: code_pb2.ABORTED,
    ErrorKind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    ErrorKind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: code_pb2.UNAVAILABLE,
    ErrorKind.INTERNAL: code_pb2.INTERNAL,
}
_STATUS_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def to_rpc_status(error: ReckonError, *, domain: str) -> grpc.Status:
    """A gRPC status carrying ``ErrorInfo`` (always), ``BadRequest`` (for field errors)
    and ``ResourceInfo`` (for NOT_FOUND)."""
    return rpc_status.to_status(status_proto(error, domain=domain))


def resource_of(error: ReckonError) -> tuple[str, str]:
    """(resource type, name) of a NOT_FOUND: given, or read from its reason and metadata.

    ``ACCOUNT_NOT_FOUND`` with ``{"account_id": "acc_1"}`` is ("account", "acc_1");
    ``UNKNOWN_PLAN`` is ("plan", "").
    """
    kind = getattr(error, "resource_type", "") or (
        error.reason.removesuffix("_NOT_FOUND").removeprefix("UNKNOWN_").lower()
    )
    name = getattr(error, "resource_name", "")
    if not name:
        for key in (f"{kind}_id", f"{kind}_code", f"{kind.rsplit('_', 1)[-1]}_id"):
            if error.metadata.get(key):
                name = error.metadata[key]
                break
    return kind, name


def status_proto(error: ReckonError, *, domain: str) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error: for a call's trailers, or an answer on a
    stream that goes on (charging's and rating's streams)."""
    status = status_pb2.Status(code=_CODES[error.kind], message=error.message)
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    )
    status.details.append(info)
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    if error.kind is ErrorKind.NOT_FOUND:
        resource_type, resource_name = resource_of(error)
        resource = any_pb2.Any()
        resource.Pack(
            error_details_pb2.ResourceInfo(
                resource_type=resource_type,
                resource_name=resource_name,
                description=error.message,
            )
        )
        status.details.append(resource)
    return status


@dataclass
class ErrorDetails:
    """What a client learns from a failed call: code, reason and field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    # ResourceInfo of a NOT_FOUND: what kind of thing, and which, was not found.
    resource_type: str = ""
    resource_name: str = ""

    @property
    def fields(self) -> set[str]:
        return {v.field for v in self.violations}


def details_of(error: grpc.RpcError) -> ErrorDetails:
    """Unpack the rich status of a failed call (works for sync and aio calls)."""
    result = ErrorDetails(code=error.code(), message=error.details() or "")
    status = _status_from_trailers(error)
    if status is not None:
        _read_details(status, result)
    return result


def details_of_status(status: status_pb2.Status) -> ErrorDetails:
    """The same for a ``google.rpc.Status`` carried inside a message (the error of one
    answer on a stream that goes on)."""
    result = ErrorDetails(
        code=_STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN), message=status.message
    )
    _read_details(status, result)
    return result


def _read_details(status: status_pb2.Status, result: ErrorDetails) -> None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            result.reason, result.domain = info.reason, info.domain
            result.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
            result.resource_type, result.resource_name = (
                resource.resource_type,
                resource.resource_name,
            )
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            result.violations = [
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            ]


def _status_from_trailers(error: grpc.RpcError) -> status_pb2.Status | None:
    trailers = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None
