"""External references and service identifiers, proto <-> domain (issue 9 item 12).

External references are the operator's own names for customers and accounts
(``ext:<ref>`` wherever an id is expected); service identifiers are the numbers
and codes a subscription's usage arrives with. Rules and normal forms are the
kit's (``services.common.codes``), shared with rating.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from google.protobuf.message import Message

from reckon.accounts.v1 import accounts_pb2 as pb
from services.common.codes import (
    EXTERNAL_PREFIX,
    ServiceIdKind,
    external_ref_problem,
    normalise_service_id,
)
from services.common.errors import Violations
from services.common.proto_convert import timestamp_from_proto

_KINDS: Final = {
    pb.SERVICE_IDENTIFIER_KIND_MSISDN: ServiceIdKind.MSISDN,
    pb.SERVICE_IDENTIFIER_KIND_SIP_URI: ServiceIdKind.SIP_URI,
    pb.SERVICE_IDENTIFIER_KIND_CONFERENCE_PIN: ServiceIdKind.CONFERENCE_PIN,
    pb.SERVICE_IDENTIFIER_KIND_ACCOUNT_CODE: ServiceIdKind.ACCOUNT_CODE,
}
_KINDS_OUT: Final = {kind.value: proto for proto, kind in _KINDS.items()}
MAX_SERVICE_IDS: Final = 20


def external_ref(violations: Violations, value: str, path: str) -> str | None:
    """An optional external reference, checked; None when not given."""
    if not value:
        return None
    if value.startswith(EXTERNAL_PREFIX):
        violations.add(path, "is the reference itself, without the 'ext:' prefix")
        return None
    problem = external_ref_problem(value)
    if problem:
        violations.add(path, problem)
        return None
    return value


def is_external_id(value: str) -> bool:
    """``ext:<ref>`` with a well-formed reference: accepted wherever an id is."""
    return value.startswith(EXTERNAL_PREFIX) and (
        external_ref_problem(value.removeprefix(EXTERNAL_PREFIX)) is None
    )


def service_ids(
    violations: Violations, values: Sequence[pb.ServiceIdentifier], path: str
) -> tuple[str, ...]:
    """Normalised service identifier keys, each problem named by its index."""
    if len(values) > MAX_SERVICE_IDS:
        violations.add(path, f"at most {MAX_SERVICE_IDS} service identifiers")
        return ()
    keys: list[str] = []
    for index, item in enumerate(values):
        here = f"{path}[{index}]"
        kind = _KINDS.get(item.kind)
        if kind is None:
            violations.add(f"{here}.kind", "is required (MSISDN, SIP_URI, CONFERENCE_PIN, ...)")
            continue
        try:
            key = normalise_service_id(kind, item.value)
        except ValueError as exc:
            violations.add(f"{here}.value", str(exc))
            continue
        if key in keys:
            violations.add(f"{here}.value", "is given twice")
            continue
        keys.append(key)
    return tuple(keys)


def start_time(violations: Violations, subscription: Message, path: str) -> datetime | None:
    """An optional start time (the domain refuses one in the future)."""
    if not subscription.HasField("start_time"):
        return None
    stamp = getattr(subscription, "start_time")  # noqa: B009
    try:
        moment = timestamp_from_proto(stamp)
    except (ValueError, OverflowError, OSError):
        violations.add(path, "is not a valid time")
        return None
    if moment.year < 1970:
        violations.add(path, "must be after 1970")
        return None
    return moment


def service_ids_to_proto(keys: Sequence[str]) -> list[pb.ServiceIdentifier]:
    out = []
    for key in keys:
        kind, _, value = key.partition(":")
        if kind in ("sip", "sips"):  # a SIP URI is its own key
            out.append(pb.ServiceIdentifier(kind=pb.SERVICE_IDENTIFIER_KIND_SIP_URI, value=key))
        else:
            out.append(pb.ServiceIdentifier(kind=_KINDS_OUT.get(kind, 0), value=value))  # type: ignore[arg-type]
    return out


__all__ = [
    "external_ref",
    "is_external_id",
    "service_ids",
    "service_ids_to_proto",
    "start_time",
]
