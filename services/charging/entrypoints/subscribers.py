"""A credit-control request's Subscription-Id, proto -> the keys it may stand for.

Issue 9 item 12, ADR 0058: switches and gateways name the subscriber by a number
(Diameter Gy's Subscription-Id: END_USER_E164, END_USER_SIP_URI, END_USER_PRIVATE),
not by Reckon's account id. The normal forms are the kit's
(``services.common.codes``), the ones accounts keeps a subscription's service
identifiers in and rating finds a CDR's account by.
"""

from __future__ import annotations

from typing import Final

from reckon.charging.v1 import charging_pb2 as pb
from services.common.codes import (
    EXTERNAL_PREFIX,
    ServiceIdKind,
    external_ref_problem,
    service_id_candidates,
)
from services.common.errors import Violations

MAX_DATA: Final = 200
# Per Subscription-Id-Type: the kinds of key its data may be, whether `ext:<ref>` is
# one, and what to say when it is none of them.
_TYPES: Final[dict[int, tuple[tuple[ServiceIdKind, ...], bool, str]]] = {
    pb.SUBSCRIPTION_ID_TYPE_UNSPECIFIED: (
        tuple(ServiceIdKind),
        True,
        "must be an E.164 number, a SIP URI, a PIN, an account code or ext:<reference>",
    ),
    pb.SUBSCRIPTION_ID_TYPE_END_USER_E164: (
        (ServiceIdKind.MSISDN,),
        False,
        "must be an E.164 number such as +31612345678 or 31612345678",
    ),
    pb.SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI: (
        (ServiceIdKind.SIP_URI,),
        False,
        "must be a SIP URI such as sip:alice@example.com",
    ),
    pb.SUBSCRIPTION_ID_TYPE_END_USER_PRIVATE: (
        (ServiceIdKind.CONFERENCE_PIN, ServiceIdKind.ACCOUNT_CODE),
        True,
        "must be a conference PIN, an account code or ext:<reference>",
    ),
}


def subscriber_keys(message: pb.SubscriptionId, v: Violations) -> tuple[str, ...]:
    """The keys ``message`` may stand for, most specific first; none (and a violation
    naming ``subscription_id.*``) when it cannot name anyone."""
    known = _TYPES.get(message.type)
    if known is None:
        v.add("subscription_id.type", "must be END_USER_E164, END_USER_SIP_URI or END_USER_PRIVATE")
        return ()
    data = message.data
    if not data.strip():
        v.add("subscription_id.data", "is required")
        return ()
    if len(data) > MAX_DATA:
        v.add("subscription_id.data", f"at most {MAX_DATA} characters")
        return ()
    kinds, external, rule = known
    text = data.strip()
    if external and text.startswith(EXTERNAL_PREFIX):
        problem = external_ref_problem(text.removeprefix(EXTERNAL_PREFIX))
        if problem:
            v.add("subscription_id.data", f"the reference after 'ext:' {problem}")
            return ()
    keys = service_id_candidates(text, kinds, external=external)
    if not keys:
        v.add("subscription_id.data", rule)
    return tuple(dict.fromkeys(keys))


__all__ = ["MAX_DATA", "subscriber_keys"]
