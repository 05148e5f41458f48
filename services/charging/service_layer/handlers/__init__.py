"""Charging's use cases, one module per use case (CHG-1..11).

``ChargingHandlers`` is what the entry points hold: the use cases composed over
one set of ports (``base.HandlersBase``). Each module is one use case:

- ``credit_control``: INITIAL, UPDATE and TERMINATE, the hot path. Look the rating
  groups up, ask pricing for the money-priced ones (cumulatively, from the
  session's priced position: ``quoting``, ``positions``, ADR 0011), run **one**
  Lua script that applies the whole request atomically (with the session's
  idempotency), commit the journal entries it produced to the SQL ledger (group
  commit), and only then answer;
- ``events``: EVENT requests (direct debits, refunds, price enquiries);
- ``buckets``: balances and buckets (create, top up, adjust, close, edit, forfeit);
- ``vouchers``: voucher batches and redemptions;
- ``sessions``: reading, listing and releasing credit-control sessions (ADR 0035);
- ``policies``: account policies and the rating-group catalog;
- ``ledger``: ledger pages.

Whatever the live store lost (NOACCOUNT) is rebuilt from SQL first (``base``).
"""

from __future__ import annotations

from services.charging.service_layer.handlers.base import Options, ledger_entry_of
from services.charging.service_layer.handlers.credit_control import CreditControl
from services.charging.service_layer.handlers.ledger import LedgerQueries
from services.charging.service_layer.handlers.policies import Policies
from services.charging.service_layer.handlers.sessions import Sessions
from services.charging.service_layer.handlers.vouchers import Vouchers


class ChargingHandlers(CreditControl, Sessions, Vouchers, Policies, LedgerQueries):
    """Every use case of charging over one store, ledger writer, pricing and clock."""


__all__ = ["ChargingHandlers", "Options", "ledger_entry_of"]
