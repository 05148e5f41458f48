"""Why rating refuses an event or a catalog, as stable reasons.

Each error carries a reason word (``NO_TARIFF``, ``UNKNOWN_PLAN`` ...) that the
usage importer stores with a rejected record (RAT-7) and that gRPC clients may
branch on; ``services.common.grpc_errors`` maps the error kind to a status code.
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound


class NoTariff(NotFound):
    """The plan has no rate for this service and destination (or band)."""

    default_reason = "NO_TARIFF"


class UnknownPlan(NotFound):
    default_reason = "UNKNOWN_PLAN"


class PlanNotInForce(FailedPrecondition):
    """The plan exists but no version of it is valid at the event time."""

    default_reason = "PLAN_NOT_IN_FORCE"


class UnknownTaxRegion(NotFound):
    default_reason = "UNKNOWN_TAX_REGION"


class UnknownDiscount(NotFound):
    default_reason = "UNKNOWN_DISCOUNT"


class UnknownFee(NotFound):
    default_reason = "UNKNOWN_FEE"


class UnknownReward(NotFound):
    default_reason = "UNKNOWN_REWARD"


class InvalidNumber(InvalidArgument):
    """The destination is not a dialable number (letters, too long, empty after '+')."""

    def __init__(self, number: str, why: str) -> None:
        super().__init__(
            FieldViolation("destination", f"{number[:40]!r} {why}"), reason="INVALID_NUMBER"
        )


class UnknownTimeZone(InvalidArgument):
    def __init__(self, zone: str) -> None:
        super().__init__(
            FieldViolation("time_zone", f"{zone[:64]!r} is not an IANA time zone"),
            reason="UNKNOWN_TIME_ZONE",
        )


class InvalidEvent(InvalidArgument):
    """A usage event that cannot be rated as given (negative quantity, naive time ...)."""

    def __init__(self, field_name: str, description: str) -> None:
        super().__init__(FieldViolation(field_name, description), reason="INVALID_EVENT")


class InvalidCatalog(InvalidArgument):
    """A catalog (document or objects) that breaks the catalog rules; every problem listed."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__(violations, reason="INVALID_CATALOG")


__all__ = [
    "InvalidCatalog",
    "InvalidEvent",
    "InvalidNumber",
    "NoTariff",
    "PlanNotInForce",
    "UnknownDiscount",
    "UnknownFee",
    "UnknownPlan",
    "UnknownReward",
    "UnknownTaxRegion",
    "UnknownTimeZone",
]
