"""The effects of reactions on other services, done after the case committed.

A reaction whose effect lives elsewhere (suspend, bar, restore through accounts; a
late fee or interest as a pending item of invoicing; a collections export file) is
stored PENDING in the case's transaction. ``dispatch`` calls the other service with
the reaction's key as ``request_id``, so a call repeated after a crash between the
call and marking the reaction DONE is replayed by that service, not applied twice.
An account already in the asked state (``INVALID_STATE_TRANSITION``) counts as done:
someone else got there first. Other failures leave the reaction PENDING to be tried
again; after ``max_attempts`` it is FAILED and logged for an operator.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import date
from typing import Final

from services.common.errors import ReckonError
from services.common.money import Money
from services.dunning.service_layer.cases import DONE, FAILED, RECORD_LEVEL, RESTORE
from services.dunning.service_layer.unit_of_work import (
    AccountsPort,
    CollectionsExport,
    DunningUnitOfWork,
    InvoicingPort,
    ReactionRecord,
)

log = logging.getLogger(__name__)

UowFactory = Callable[[], DunningUnitOfWork]
ALREADY_THERE: Final = frozenset({"INVALID_STATE_TRANSITION"})
GIVE_UP: Final = frozenset({"ACCOUNT_NOT_FOUND", "ACCOUNT_CLOSED", "INVOICE_NOT_FOUND"})


def request_id_of(key: str) -> str:
    """A request id other services accept (at most 128 characters) derived from the key."""
    return "dun-" + hashlib.sha256(key.encode()).hexdigest()[:60]


class Effects:
    def __init__(
        self,
        uow_factory: UowFactory,
        accounts: AccountsPort | None,
        invoicing: InvoicingPort | None,
        export: CollectionsExport | None,
        *,
        max_attempts: int = 20,
    ) -> None:
        self._uow_factory = uow_factory
        self._accounts = accounts
        self._invoicing = invoicing
        self._export = export
        self._max_attempts = max_attempts

    def dispatch(self, limit: int = 200) -> int:
        """Do the pending effects (oldest first); returns how many were finished."""
        with self._uow_factory() as uow:
            pending = list(uow.reactions.pending(limit))
        finished = 0
        exports: set[date] = set()
        for reaction in pending:
            try:
                if not self._do(reaction):
                    continue
            except ReckonError as exc:
                if exc.reason in ALREADY_THERE:
                    log.info("%s: account already there (%s)", reaction.key, exc.message)
                elif exc.reason in GIVE_UP or reaction.attempts + 1 >= self._max_attempts:
                    log.error("dunning reaction %s failed for good: %s", reaction.key, exc.message)
                    self._finish(reaction.key, FAILED, exc.message)
                    continue
                else:
                    self._failed(reaction.key, exc.message)
                    continue
            except Exception as exc:  # noqa: BLE001 - a peer down: try again later
                log.warning("dunning reaction %s: %s; will retry", reaction.key, exc)
                self._failed(reaction.key, str(exc))
                continue
            if reaction.kind == "COLLECTIONS":
                exports.add(reaction.run_date)
            self._finish(reaction.key, DONE)
            finished += 1
        for day in sorted(exports):
            self._write_export(day)
        return finished

    def _do(self, reaction: ReactionRecord) -> bool:
        """Call the other service; False when no port is configured (stays PENDING)."""
        request_id = request_id_of(reaction.key)
        reason = f"dunning: {reaction.description}"[:500]
        if reaction.kind in ("SUSPEND", "BAR", RESTORE):
            if self._accounts is None:
                return False
            action = {
                "SUSPEND": self._accounts.suspend,
                "BAR": self._accounts.bar,
                RESTORE: self._accounts.restore,
            }[reaction.kind]
            action(reaction.account_id, reason, request_id)
            return True
        if reaction.kind in ("LATE_FEE", "PENALTY_INTEREST"):
            if self._invoicing is None:
                return False
            assert reaction.amount is not None
            self._invoicing.add_pending_item(
                reaction.account_id,
                description=reaction.description,
                amount=Money.of(reaction.amount, reaction.currency),
                late_fee=reaction.kind == "LATE_FEE",
                reference_invoice_id=reaction.invoice_id,
                request_id=request_id,
            )
            return True
        if reaction.kind == RECORD_LEVEL:
            if self._invoicing is None:
                return False
            self._invoicing.record_dunning_level(reaction.invoice_id, reaction.level, request_id)
            return True
        if reaction.kind == "COLLECTIONS":
            return self._export is not None
        return True

    def _write_export(self, day: date) -> None:
        assert self._export is not None
        with self._uow_factory() as uow:
            handed = list(uow.reactions.handed_over(day))
        self._export.write(day, handed)

    def _finish(self, key: str, status: str, error: str = "") -> None:
        with self._uow_factory() as uow:
            uow.reactions.finish(key, status, uow.clock.now(), error[:500])
            uow.commit()

    def _failed(self, key: str, error: str) -> None:
        with self._uow_factory() as uow:
            uow.reactions.failed_attempt(key, error[:500])
            uow.commit()
