"""The port through which accounts asks whether a plan or add-on code exists.

The product catalog belongs to the rating service (RAT-1). ``bootstrap`` wires
``adapters.rating_catalog.RatingPlanCatalog`` (rating's ``GetPlan`` over a
blocking channel, positive answers cached briefly) when ``RATING_ADDR`` is set,
and subscriptions to unknown plans are refused (INVALID_ARGUMENT on the plan
code field, reason ``UNKNOWN_PLAN``). Without rating, ``WellFormedPlanCatalog``
accepts every code of the right shape, and a warning at start says so.

The port is synchronous because handlers run in worker threads. An adapter that
cannot get an answer raises (``Unavailable``) rather than returning True.
"""

from __future__ import annotations

from typing import Protocol

from services.accounts.domain.model import PLAN_CODE


class PlanCatalog(Protocol):
    def has_plan(self, plan_code: str) -> bool:
        """True if subscriptions to ``plan_code`` may be sold now."""
        ...

    def has_add_on(self, add_on_code: str) -> bool:
        """True if ``add_on_code`` may be added to subscriptions now."""
        ...


class WellFormedPlanCatalog:
    """Accepts every well-formed code: the catalog of an accounts service without rating."""

    def has_plan(self, plan_code: str) -> bool:
        return PLAN_CODE.match(plan_code) is not None

    def has_add_on(self, add_on_code: str) -> bool:
        return PLAN_CODE.match(add_on_code) is not None
