"""A credit-control request's Subscription-Id -> the keys charging looks accounts up by
(ADR 0058): the kit's normal forms, the same accounts stores and rating looks up."""

from __future__ import annotations

import pytest

from reckon.charging.v1 import charging_pb2 as pb
from services.charging.entrypoints.subscribers import subscriber_keys
from services.common.codes import ServiceIdKind, service_id_candidates
from services.common.errors import Violations

E164, SIP, PRIVATE, ANY = (
    pb.SUBSCRIPTION_ID_TYPE_END_USER_E164,
    pb.SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI,
    pb.SUBSCRIPTION_ID_TYPE_END_USER_PRIVATE,
    pb.SUBSCRIPTION_ID_TYPE_UNSPECIFIED,
)


def keys(id_type: int, data: str) -> tuple[tuple[str, ...], set[str]]:
    v = Violations()
    found = subscriber_keys(pb.SubscriptionId(type=id_type, data=data), v)  # type: ignore[arg-type]
    return found, {item.field for item in v.items}


@pytest.mark.parametrize(
    ("id_type", "data", "expected"),
    [
        (E164, "+31612345678", ("msisdn:+31612345678",)),
        (E164, "31612345678", ("msisdn:+31612345678",)),
        (E164, "0031 6 1234 5678", ("msisdn:+31612345678",)),
        (SIP, " sip:Ada@Example.COM ", ("sip:ada@example.com",)),
        (PRIVATE, "482913", ("pin:482913", "code:482913")),
        (PRIVATE, "BRIDGE-7", ("code:BRIDGE-7",)),
        (PRIVATE, "ext:ACC-7", ("ext:ACC-7",)),
        (ANY, "31612345678", ("msisdn:+31612345678", "pin:31612345678", "code:31612345678")),
        (ANY, "sip:ada@example.com", ("sip:ada@example.com",)),
        (ANY, "ext:ACC-7", ("ext:ACC-7",)),
    ],
)
def test_each_type_stands_for_the_keys_accounts_keeps(
    id_type: int, data: str, expected: tuple[str, ...]
) -> None:
    assert keys(id_type, data) == (expected, set())


@pytest.mark.parametrize(
    ("id_type", "data", "field"),
    [
        (E164, "", "subscription_id.data"),
        (E164, "06 1234", "subscription_id.data"),
        (E164, "ext:ACC-7", "subscription_id.data"),  # a reference is not a number
        (E164, "sip:ada@example.com", "subscription_id.data"),
        (SIP, "+31612345678", "subscription_id.data"),
        (PRIVATE, "ext:", "subscription_id.data"),
        (ANY, "x" * 201, "subscription_id.data"),
        (7, "+31612345678", "subscription_id.type"),
    ],
)
def test_what_names_nobody_is_refused_naming_the_field(id_type: int, data: str, field: str) -> None:
    assert keys(id_type, data) == ((), {field})


def test_the_kits_candidates_keep_their_old_answer_without_kinds() -> None:
    # Rating's CDR lookup calls it without kinds: every kind, references included.
    assert service_id_candidates("ext:ACC-7") == ["ext:ACC-7"]
    assert service_id_candidates("31612345678")[0] == "msisdn:+31612345678"
    assert service_id_candidates("ext:ACC-7", (ServiceIdKind.MSISDN,), external=False) == []
