"""Domain errors, free of any transport.

Domains and handlers raise these; ``services.common.grpc_errors`` is the one
place that maps them to ``google.rpc.Status`` (code, ``ErrorInfo`` reason and
``BadRequest`` field violations). A reason is a stable UPPER_SNAKE_CASE word that
clients may branch on; the message is for people.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum


class ErrorKind(Enum):
    """What kind of failure this is; each maps to one gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str  # a path in the request, e.g. "account.bill_cycle_day"
    description: str


class ReckonError(Exception):
    """Base of every error Reckon raises on purpose."""

    kind = ErrorKind.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})


class InvalidArgument(ReckonError):
    kind = ErrorKind.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: list[FieldViolation] | FieldViolation,
        message: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self.violations = [violations] if isinstance(violations, FieldViolation) else violations
        text = message or "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(text, reason=reason)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(name, description))


class NotFound(ReckonError):
    """Carries a ``ResourceInfo`` on the wire: the type and name given here, else
    read from the reason (``ACCOUNT_NOT_FOUND`` -> ``account``) and metadata."""

    kind = ErrorKind.NOT_FOUND
    default_reason = "NOT_FOUND"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        resource_type: str = "",
        resource_name: str = "",
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(ReckonError):
    kind = ErrorKind.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(ReckonError):
    kind = ErrorKind.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(ReckonError):
    """A concurrent change won; the caller may retry."""

    kind = ErrorKind.ABORTED
    default_reason = "CONCURRENT_MODIFICATION"


class PermissionDenied(ReckonError):
    kind = ErrorKind.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(ReckonError):
    kind = ErrorKind.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(ReckonError):
    kind = ErrorKind.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(ReckonError):
    kind = ErrorKind.UNAVAILABLE
    default_reason = "UNAVAILABLE"


@dataclass
class Violations:
    """Collects every problem of a request so the caller learns them all at once."""

    prefix: str = ""
    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_name: str, description: str) -> None:
        self.items.append(FieldViolation(self._path(field_name), description))

    def check(self, ok: bool, field_name: str, description: str) -> bool:
        if not ok:
            self.add(field_name, description)
        return ok

    def require(self, value: object, field_name: str) -> bool:
        return self.check(value not in (None, ""), field_name, "is required")

    @contextmanager
    def nested(self, prefix: str) -> Iterator[Violations]:
        child = Violations(self._path(prefix))
        yield child
        self.items.extend(child.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(list(self.items))

    def _path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def __bool__(self) -> bool:
        return bool(self.items)
