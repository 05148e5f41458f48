"""What other services see of a recipient (``MessageStatusChanged``, ADR 0063)."""

from __future__ import annotations

import pytest

from services.notifications.domain.addresses import masked


@pytest.mark.parametrize(
    ("channel", "recipient", "shown"),
    [
        ("EMAIL", "ada.lovelace@example.com", "a***@example.com"),
        ("EMAIL", "not-an-address", "***"),
        ("SMS", "+31612345678", "+316******78"),
        ("SMS", "+3161", "***"),
        ("WEBHOOK", "end_01HZX", "end_01HZX"),
    ],
)
def test_recipients_are_masked_for_other_services(channel: str, recipient: str, shown: str) -> None:
    assert masked(channel, recipient) == shown
