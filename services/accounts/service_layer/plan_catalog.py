"""The port through which accounts asks whether a plan or add-on code exists.

The product catalog belongs to the rating service (RAT-1). Until accounts is
wired to it, ``WellFormedPlanCatalog`` accepts every code of the right shape.
When rating's catalog API is available, an adapter implementing ``PlanCatalog``
with a rating client goes into ``bootstrap`` instead, and subscriptions to
unknown plans are refused (INVALID_ARGUMENT on the plan/add-on code field)
without any change to the handlers.

The port is synchronous because handlers run in worker threads; a gRPC adapter
would use a synchronous channel (or hop onto the server's loop) and should
cache answers briefly, since catalogs change rarely.
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
    """Accepts every well-formed code: the stand-in until rating's catalog is wired in."""

    def has_plan(self, plan_code: str) -> bool:
        return PLAN_CODE.match(plan_code) is not None

    def has_add_on(self, add_on_code: str) -> bool:
        return PLAN_CODE.match(add_on_code) is not None
