"""Credit-control requests, answers and the session state machine (CHG-1, CHG-2, CHG-7).

In the style of Diameter Gy (RFC 4006 / RFC 8506): a session opens with an
INITIAL request (number 0) that reserves units per rating group, continues with
UPDATE requests (numbers 1, 2, ...) that debit the used units and reserve more,
and ends with TERMINATE, which debits the final usage and releases the rest. An
EVENT is a one-shot request: direct debit, refund, balance check or price
enquiry (RFC 4006 section 6).

Sessions are kept by the Redis store, atomically with the balances; the rules
for what a request does to a session are here (``classify``) and mirrored by
``adapters/lua/credit_control.lua``:

=====================  ============================================================
session / request      outcome
=====================  ============================================================
same number as last    REPLAY: the first answer again, nothing changes (CHG-2)
older number answered  REPLAY: that request's answer, while the session lives
older number, never    OUT_OF_ORDER: nothing changes
none, INITIAL          OPEN: a new session (its request number must be 0)
none, UPDATE/TERMINATE UNKNOWN (DIAMETER_UNKNOWN_SESSION_ID 5002): never opened, or
                       forgotten; nothing changes (RFC 4006 stricter, ADR 0035). A
                       session Redis lost is restored by the rebuild (ADR 0020)
open                   APPLY
closed by TERMINATE    CLOSED (UNKNOWN_SESSION_ID), nothing changes
swept (Tcc expired)    LATE: used units are still debited (CHG-4); an UPDATE gets
or released            UNKNOWN_SESSION_ID and no new grant; TERMINATE succeeds
INITIAL on a session   OUT_OF_ORDER (a retransmitted INITIAL is an older number: REPLAY)
=====================  ============================================================
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from services.charging.domain.accounts import FinalUnitAction
from services.charging.domain.units import Quantity
from services.common.money import Money


class RequestType(StrEnum):
    INITIAL = "I"
    UPDATE = "U"
    TERMINATE = "T"
    EVENT = "E"


class RequestedAction(StrEnum):
    DIRECT_DEBITING = "DEBIT"
    REFUND_ACCOUNT = "REFUND"
    CHECK_BALANCE = "CHECK"
    PRICE_ENQUIRY = "PRICE"


class ResultCode(Enum):
    """Outcomes with their Diameter Result-Code numbers."""

    SUCCESS = 2001
    END_USER_SERVICE_DENIED = 4010
    CREDIT_LIMIT_REACHED = 4012
    UNKNOWN_SESSION_ID = 5002
    OUT_OF_ORDER = 5012
    RATING_FAILED = 5031

    @property
    def diameter(self) -> int:
        return self.value


class SessionState(StrEnum):
    OPEN = "O"
    CLOSED = "C"  # terminated, or refused at INITIAL
    SWEPT = "X"  # closed by supervision (Tcc): its reservations were returned


class Disposition(StrEnum):
    OPEN = "open"
    APPLY = "apply"
    REPLAY = "replay"
    OUT_OF_ORDER = "out_of_order"
    UNKNOWN = "unknown"
    CLOSED = "closed"
    LATE = "late"


def classify(
    request_type: RequestType,
    request_number: int,
    state: SessionState | None,
    last_number: int | None,
    answered: Collection[int] = (),
) -> Disposition:
    """What a request does to its session (see the module docstring's table);
    ``answered``: the request numbers of the session whose answers are still kept."""
    if state is None or last_number is None:
        return Disposition.OPEN if request_type is RequestType.INITIAL else Disposition.UNKNOWN
    if request_number == last_number:
        return Disposition.REPLAY
    if request_number < last_number:
        return Disposition.REPLAY if request_number in answered else Disposition.OUT_OF_ORDER
    if request_type is RequestType.INITIAL:
        return Disposition.OUT_OF_ORDER
    if state is SessionState.CLOSED:
        return Disposition.CLOSED
    if state is SessionState.SWEPT:
        return Disposition.LATE
    return Disposition.APPLY


@dataclass(frozen=True, slots=True)
class RatingGroupRequest:
    """One rating group of a request: units wanted and units used, in the service's unit."""

    rating_group: int
    requested: Quantity | None = None
    used: Quantity | None = None
    destination: str = ""


@dataclass(frozen=True, slots=True)
class CreditControlRequest:
    session_id: str
    request_type: RequestType
    request_number: int
    account_id: str
    rating_groups: tuple[RatingGroupRequest, ...] = ()
    action: RequestedAction | None = None
    # Named by a service identifier instead (issue 9 item 12): the keys it may stand
    # for, most specific first (``msisdn:+31...``, ``sip:...``, ``ext:...``);
    # ``account_id`` is empty until the handler finds the account they name.
    subscriber: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FinalUnitIndication:
    action: FinalUnitAction
    redirect_address: str = ""
    restriction_filter_id: str = ""


@dataclass(frozen=True, slots=True)
class RatingGroupAnswer:
    rating_group: int
    result: ResultCode
    granted: Quantity | None = None
    validity_seconds: int = 0
    final_unit: FinalUnitIndication | None = None
    cost: Money | None = None
    charged_units: Quantity | None = None


@dataclass(frozen=True, slots=True)
class CreditControlAnswer:
    session_id: str
    request_number: int
    request_type: RequestType
    result: ResultCode
    rating_groups: tuple[RatingGroupAnswer, ...] = field(default_factory=tuple)


def overall_result(results: list[ResultCode]) -> ResultCode:
    """The request's result: SUCCESS when any rating group succeeded, else the first failure.

    Diameter puts per-service outcomes in each MSCC; the request-level code says
    whether the request as a whole was understood and served.
    """
    if not results or ResultCode.SUCCESS in results:
        return ResultCode.SUCCESS
    return results[0]
