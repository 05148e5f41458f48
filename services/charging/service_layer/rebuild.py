"""Rebuilding an account's live state from SQL after Redis lost it (CHG-9).

Every script answers NOACCOUNT when the account hash is missing. The caller then
asks ``AccountLoader.ensure_loaded``: an account SQL does not know is NOT_FOUND;
one it knows is restored from a snapshot: policy and state, bucket metadata,
balance per bucket = credits - debits of the ledger, the last answered request of
recent sessions (so a retry is answered, not charged again), and what open sessions
held after that request, held again until the same sweep time (so money granted to one
session is not granted to another; the usage it covers may still be reported).
A fresh epoch keeps new journal entry ids unique.

The snapshot is read only after the fence (``restore.lua``): requests whose
scripts ran on the lost Redis may still be committing, and their entries must be
in the snapshot or never reach SQL. Concurrent callers in one process share one
rebuild, a task of its own that no caller's cancellation reaches (ADR 0034);
across processes the restore script admits the first and answers EXISTS to the
rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from services.charging.domain.instants import to_ms
from services.charging.domain.wallet import bucket_meta
from services.charging.service_layer.ports import BalanceStore, Snapshot
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock
from services.common.errors import NotFound, Unavailable
from services.common.ids import new_id
from services.common.telemetry import meter

log = logging.getLogger(__name__)


def account_not_found(account_id: str) -> NotFound:
    return NotFound(
        f"account {account_id!r} is not known to charging (set its policy first)",
        reason="ACCOUNT_NOT_FOUND",
        metadata={"account_id": account_id},
    )


class AccountLoader:
    def __init__(
        self,
        store: BalanceStore,
        uow_factory: Callable[[], ChargingUnitOfWork],
        clock: Clock,
        *,
        fence_ms: int,
        window_s: int,
        hold_s: int = 0,
        max_wait_s: float = 30.0,
    ) -> None:
        self._store = store
        self._uow_factory = uow_factory
        self._clock = clock
        self._fence_ms = fence_ms
        self._window_s = window_s
        # Sessions are read back for as long as a reservation may live (validity + grace),
        # even when the idempotency window is shorter: their holds are restored too.
        self._lookback_s = max(window_s, hold_s)
        self._max_wait_s = max_wait_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self.rebuilt = 0  # accounts this process restored after a loss
        self._rebuilt = meter().create_counter(
            "reckon.charging.accounts.rebuilt",
            unit="{account}",
            description="accounts restored from the SQL ledger",
        )

    @property
    def lookback_seconds(self) -> int:
        """How far back a session may have answered and still be live (or held)."""
        return self._lookback_s

    def snapshot(self, account_id: str) -> Snapshot | None:
        since = self._clock.now() - timedelta(seconds=self._lookback_s)
        with self._uow_factory() as uow:
            record = uow.accounts.get(account_id)
            if record is None:
                return None
            buckets = uow.buckets.for_account(account_id)
            balances = uow.ledger.balances(account_id)
            sessions = uow.ledger.recent_sessions(account_id, since)
        policy = record.policy
        t80, _ = policy.credit_thresholds
        account = {
            "mode": policy.mode.value,
            "cur": policy.currency,
            "st": record.state.value,
            "stv": str(record.state_version),
            "lim": str(policy.credit_limit),
            "low": "" if policy.low_balance is None else str(policy.low_balance),
            "t80": str(t80),
            "fua": policy.final_unit_action.value,
            "fur": policy.redirect_address,
            "fuf": policy.restriction_filter_id,
            "pver": str(record.version),
        }
        rows = [
            {"id": b.bucket_id, "meta": bucket_meta(b), "a": str(balances.get(b.bucket_id, 0))}
            for b in buckets
        ]
        return Snapshot(account=account, buckets=rows, sessions=sessions)

    async def ensure_loaded(self, account_id: str, *, fresh: bool = False) -> None:
        """Make the account exist in the live store, or raise NotFound(ACCOUNT_NOT_FOUND).

        The rebuild runs as a task of its own that every caller (the first included)
        awaits through a shield: a caller whose deadline expires stops waiting, but the
        rebuild goes on and the other callers get its outcome (ADR 0034). Were it run in
        the first caller's task, that caller's cancellation would be handed to everyone
        waiting on the same account.
        """
        task = self._running.get(account_id)
        if task is None:
            task = asyncio.ensure_future(self._load(account_id, fresh))
            self._running[account_id] = task
            task.add_done_callback(partial(self._finished, account_id))
        await asyncio.shield(task)

    def _finished(self, account_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(account_id) is task:
            del self._running[account_id]
        if not task.cancelled():
            task.exception()  # retrieved: the callers re-raise it themselves

    async def _load(self, account_id: str, fresh: bool) -> None:
        waited = 0.0
        while True:
            snap_ms = await self._store.server_time_ms()
            snapshot = await asyncio.to_thread(self.snapshot, account_id)
            if snapshot is None:
                raise account_not_found(account_id)
            status, wait_ms, visit_ms = await self._store.restore(
                account_id,
                snapshot,
                fresh=fresh,
                fence_ms=self._fence_ms,
                snap_ms=snap_ms,
                epoch=new_id("ep")[3:],
                window_s=self._window_s,
                now_ms=to_ms(self._clock.now()),
            )
            if visit_ms:
                # Reservations held again: the sweeper's index must know when they fall due.
                await self._store.touch(account_id, visit_ms)
            if status in ("OK", "EXISTS"):
                if status == "OK" and not fresh:
                    self.rebuilt += 1
                    self._rebuilt.add(1)
                    log.warning("account %s rebuilt from the ledger", account_id)
                return
            delay = max(wait_ms, 10) / 1000
            waited += delay
            if waited > self._max_wait_s:
                raise Unavailable(
                    f"account {account_id} is being rebuilt; retry", reason="REBUILDING"
                )
            await asyncio.sleep(delay)


__all__ = ["AccountLoader", "account_not_found"]
