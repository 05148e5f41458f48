"""Codes shared between services, with the one rule each follows.

A plan code is written in rating's catalog and subscribed to in accounts: both
check it with ``plan_code_problem``, so ``reckon catalog check`` (offline) refuses
exactly the codes accounts would refuse to subscribe ("Conference Pro!",
"HID-CONF"), rather than a catalog applying plans nobody can buy.
"""

from __future__ import annotations

import re
from typing import Final

# Plan and add-on codes of the product catalog: lower case, URL- and file-name-safe.
PLAN_CODE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PLAN_CODE_RULE: Final = (
    "must be 1-64 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit"
)


def plan_code_problem(code: str) -> str | None:
    """Why ``code`` cannot be a plan code, or None when it can."""
    if not code:
        return "is required"
    if not PLAN_CODE.match(code):
        return PLAN_CODE_RULE
    return None


__all__ = ["PLAN_CODE", "PLAN_CODE_RULE", "plan_code_problem"]
