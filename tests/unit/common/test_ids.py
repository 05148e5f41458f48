"""Ids keep their ULID-style form whatever encodes them."""

from __future__ import annotations

import random

import pytest

from services.common import ids

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _by_hand(prefix: str, value: int) -> str:
    """The definition: 26 Crockford base32 digits of the 128-bit value, most significant
    first (the encoding before ADR 0070)."""
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


@pytest.mark.parametrize(
    "value",
    [0, 1, (1 << 128) - 1, 1 << 80, *(random.Random(7).getrandbits(128) for _ in range(200))],
)
def test_new_id_is_the_values_crockford_digits(value: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.common.ids.time.time_ns", lambda: (value >> 80) * 1_000_000)
    monkeypatch.setattr(
        "services.common.ids.os.urandom", lambda n: (value & ((1 << 80) - 1)).to_bytes(n, "big")
    )
    assert ids.new_id("evt") == _by_hand("evt", value)


def test_ids_are_time_ordered_and_unique() -> None:
    made = [ids.new_id("x") for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(len(i) == 28 and i.startswith("x_") for i in made)
    assert [i[:12] for i in made] == sorted(i[:12] for i in made)  # the milliseconds lead
