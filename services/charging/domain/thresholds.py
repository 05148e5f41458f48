"""Threshold rules (CHG-10): low balance and credit limit at 80% and 100%.

Both look at the committed money balance of the account's currency (available
plus reserved over its money buckets, i.e. credits minus debits): a reservation
is not yet a charge, so a threshold fires on what was actually used. Each fires
once, on the operation that crosses it downwards; the Lua scripts evaluate the
same rules atomically with the change (``_lib.lua``).
"""

from __future__ import annotations

from services.charging.domain.accounts import credit_threshold

CREDIT_LEVELS = (80, 100)


def low_balance_crossed(before: int, after: int, threshold: int | None) -> bool:
    return threshold is not None and before >= threshold > after


def credit_levels_crossed(before: int, after: int, credit_limit: int) -> list[int]:
    """Percent levels of the credit limit that usage reached with this change."""
    if credit_limit <= 0:
        return []
    used_before, used_after = max(0, -before), max(0, -after)
    return [
        level
        for level in CREDIT_LEVELS
        if used_before < credit_threshold(credit_limit, level) <= used_after
    ]
