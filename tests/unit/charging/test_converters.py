"""Every domain value charging can answer with has its proto value: none falls through."""

from __future__ import annotations

from reckon.charging.v1 import charging_pb2 as pb
from services.charging.domain.credit_control import ResultCode
from services.charging.domain.ledger import EntryKind
from services.charging.entrypoints.converters import ENTRY_KINDS_OUT, RESULTS_OUT


def test_every_ledger_entry_kind_has_its_proto_value() -> None:
    assert set(ENTRY_KINDS_OUT) == set(EntryKind)
    assert ENTRY_KINDS_OUT[EntryKind.EXPIRY] == pb.ENTRY_KIND_EXPIRY
    names = {pb.EntryKind.Name(value) for value in ENTRY_KINDS_OUT.values()}
    assert names == {f"ENTRY_KIND_{kind.value}" for kind in EntryKind}


def test_every_result_code_has_its_proto_value() -> None:
    assert set(RESULTS_OUT) == set(ResultCode)
