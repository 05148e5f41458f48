"""The customer scope a call carries, checked again by the services (defence in depth).

The gateway serves customers (self-care) through the same RPCs as operators. When it
calls on behalf of a logged-in customer it adds ``x-reckon-customer-id`` to the
call's metadata; a service's read path then refuses anything that customer does not
own with NOT_FOUND, exactly as for an id that does not exist, so ids cannot be probed.
Calls without the key (operators, other services) are unscoped. Only holders of the
service token can call at all, so the metadata cannot be forged from outside.
"""

from __future__ import annotations

from typing import Any

from services.common.errors import NotFound

CUSTOMER_SCOPE_KEY = "x-reckon-customer-id"


def customer_scope(context: Any) -> str | None:
    """The customer the call is restricted to, or None for an unscoped call."""
    for key, value in context.invocation_metadata() or ():
        if key == CUSTOMER_SCOPE_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def check_owner(
    scope: str | None, owner_customer_id: str | None, *, reason: str, what: str
) -> None:
    """Raise NOT_FOUND (``reason``, as for a missing ``what``) when the call is scoped
    (``scope``, from ``customer_scope``) to a customer other than the owner."""
    if scope is not None and owner_customer_id != scope:
        raise NotFound(f"{what} not found", reason=reason)
