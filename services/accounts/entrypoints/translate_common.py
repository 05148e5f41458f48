"""What the accounts translation modules share: enum maps, update masks, page tokens.

Enum values map both ways between the wire and the domain; ``_mask_fields``
reads an ``update_mask`` (AIP-134); page tokens are bound to the query they came
from (``_query_key``), so a token is refused when the filters change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final, TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import (
    AccountState,
    ChangeTiming,
    PaymentMode,
    SubscriptionState,
)
from services.accounts.entrypoints import validation as check
from services.common.errors import Violations
from services.common.proto_convert import decode_page_token, encode_page_token

_PAYMENT_MODE_TO_PROTO: Final[Mapping[PaymentMode, pb.PaymentMode.ValueType]] = {
    PaymentMode.PREPAID: pb.PAYMENT_MODE_PREPAID,
    PaymentMode.POSTPAID: pb.PAYMENT_MODE_POSTPAID,
    PaymentMode.HYBRID: pb.PAYMENT_MODE_HYBRID,
}
_ACCOUNT_STATE_TO_PROTO: Final[Mapping[AccountState, pb.AccountState.ValueType]] = {
    AccountState.ACTIVE: pb.ACCOUNT_STATE_ACTIVE,
    AccountState.SUSPENDED: pb.ACCOUNT_STATE_SUSPENDED,
    AccountState.BARRED: pb.ACCOUNT_STATE_BARRED,
    AccountState.CLOSED: pb.ACCOUNT_STATE_CLOSED,
}
_SUBSCRIPTION_STATE_TO_PROTO: Final[Mapping[SubscriptionState, pb.SubscriptionState.ValueType]] = {
    SubscriptionState.ACTIVE: pb.SUBSCRIPTION_STATE_ACTIVE,
    SubscriptionState.CANCELLED: pb.SUBSCRIPTION_STATE_CANCELLED,
}
PAYMENT_MODES: Final[Mapping[int, PaymentMode]] = {
    int(v): k for k, v in _PAYMENT_MODE_TO_PROTO.items()
}
ACCOUNT_STATES: Final[Mapping[int, AccountState]] = {
    int(v): k for k, v in _ACCOUNT_STATE_TO_PROTO.items()
}
SUBSCRIPTION_STATES: Final[Mapping[int, SubscriptionState]] = {
    int(v): k for k, v in _SUBSCRIPTION_STATE_TO_PROTO.items()
}
TIMINGS: Final[Mapping[int, ChangeTiming]] = {
    pb.CHANGE_TIMING_IMMEDIATE: ChangeTiming.IMMEDIATE,
    pb.CHANGE_TIMING_END_OF_CYCLE: ChangeTiming.END_OF_CYCLE,
}

E = TypeVar("E", AccountState, SubscriptionState)


def next_page_token(next_after: str, key: str) -> str:
    return encode_page_token({"after": next_after, "query": key}) if next_after else ""


def _fingerprint(request: Message) -> str:
    return check.fingerprint(request)


def _payment_mode(v: Violations, value: int, path: str) -> PaymentMode | None:
    mode = PAYMENT_MODES.get(value)
    if mode is None:
        v.add(path, "is required: PREPAID, POSTPAID or HYBRID")
    return mode


def _timing(v: Violations, value: int) -> ChangeTiming | None:
    timing = TIMINGS.get(value)
    if timing is None:
        v.add("timing", "is required: IMMEDIATE or END_OF_CYCLE")
    return timing


def _optional_enum(v: Violations, value: int, known: Mapping[int, E], path: str) -> E | None:
    """A filter enum: 0 (UNSPECIFIED) means no filter."""
    if value == 0:
        return None
    found = known.get(value)
    if found is None:
        v.add(path, f"unknown value {value}")
    return found


def _mask_fields(
    v: Violations,
    request: pb.UpdateCustomerRequest | pb.UpdateAccountRequest,
    resource: str,
    mutable: frozenset[str],
    immutable: Mapping[str, str],
) -> frozenset[str]:
    """The fields an update changes, from ``update_mask`` (AIP-134).

    An empty mask means every mutable field set in the resource; ``*`` means all
    mutable fields (unset ones are cleared). Paths may carry the resource prefix.
    """
    if not request.HasField(resource):  # type: ignore[arg-type]
        v.add(resource, "is required")
        return frozenset()
    message: Message = getattr(request, resource)
    mask: field_mask_pb2.FieldMask = request.update_mask
    paths = [p.removeprefix(f"{resource}.") for p in mask.paths]
    if not paths:
        chosen = frozenset(f.name for f, _ in message.ListFields()) & mutable
    elif "*" in paths:
        chosen = mutable
    else:
        chosen = frozenset()
        for path in paths:
            if path in mutable:
                chosen |= {path}
            elif path in immutable:
                v.add("update_mask", f"{path} {immutable[path]}")
            else:
                v.add("update_mask", f"names unknown field {path!r}")
    if not chosen and not v:
        v.add("update_mask", "names no field to change")
    return chosen


def _query_key(*parts: str) -> str:
    # A page token is only valid for the query it came from; this binds the two.
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _page_cursor(v: Violations, token: str, key: str) -> str:
    cursor = decode_page_token(token, v)
    if cursor is None:
        return ""
    after = cursor.get("after", "")
    if cursor.get("query") != key or not after or len(after) > 64:
        v.add("page_token", "does not belong to this query (were the filters changed?)")
        return ""
    return after
