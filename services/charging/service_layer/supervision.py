"""Supervision: reservations never leak, crashed requests' journals reach SQL (CHG-4, CHG-9).

The sweeper runs on a timer but takes "now" from the injected clock, so tests
(and the operators' test clock) move time and sweep without sleeping. Each tick
it walks every shard of the global index (``ch:{sweep:<n>}:due``, sharded by a
hash of the account id, each shard under its own hash tag so it lives on one
Redis Cluster node), leases the accounts due by now, and for each runs
``sweep.lua``: reservations past validity + grace go back to the balance, their
sessions are closed as Tcc would, and journal entries a crashed request left
behind are committed to the ledger. Then the account's next visit is set with a
compare-and-set, so a touch that raced the sweep is never lost. Nothing here
relies on key-expiry notifications.

Request scripts ask for a visit (``touch``) only when they need an earlier one
than the account already has, so most requests cost no extra round trip. A
process that dies between its script and its touch leaves an account the index
does not know; the backstop scan (``SCAN`` for accounts holding reservations or
journal entries, on every node) puts such accounts back every few minutes.

Also here: announcing buckets that expire soon or did (CHG-10), forfeiting what
ended buckets still have into the ledger (ADR 0021), and finishing voucher
redemptions a crash interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from services.charging.domain.buckets import Bucket
from services.charging.domain.events import BucketExpired, BucketExpiring
from services.charging.domain.instants import to_ms
from services.charging.domain.units import Quantity
from services.charging.service_layer.catalog import ServiceCatalog
from services.charging.service_layer.handlers import ChargingHandlers
from services.charging.service_layer.ports import BalanceStore, LedgerWriter
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock, clock_sleep
from services.common.telemetry import meter

log = logging.getLogger(__name__)


@dataclass
class SweepStats:
    accounts: int = 0
    sessions_closed: int = 0
    entries_committed: int = 0


class Sweeper:
    def __init__(
        self,
        store: BalanceStore,
        writer: LedgerWriter,
        clock: Clock,
        *,
        window_s: int,
        journal_drain_ms: int,
        lease_ms: int = 30_000,
        batch: int = 200,
    ) -> None:
        self._store = store
        self._writer = writer
        self._clock = clock
        self._window_s = window_s
        self._drain_ms = journal_drain_ms
        self._lease_ms = lease_ms
        self._batch = batch
        self._closed = meter().create_counter(
            "reckon.charging.sessions.swept",
            unit="{session}",
            description="sessions closed by supervision (Tcc)",
        )

    async def sweep_once(self) -> SweepStats:
        stats = SweepStats()
        now_ms = to_ms(self._clock.now())
        for shard in range(self._store.shards):
            while True:
                claimed = await self._store.claim(shard, now_ms, self._lease_ms, self._batch)
                if not claimed:
                    break
                await asyncio.gather(
                    *(self._sweep_account(shard, a, v, now_ms, stats) for a, v in claimed)
                )
                if len(claimed) < self._batch:
                    break
        if stats.sessions_closed:
            self._closed.add(stats.sessions_closed)
        return stats

    async def _sweep_account(
        self, shard: int, account_id: str, version: str, now_ms: int, stats: SweepStats
    ) -> None:
        try:
            result = await self._store.sweep(
                account_id,
                {"now": now_ms, "win": self._window_s, "jd": self._drain_ms, "limit": 1000},
            )
            next_ms = result.next_visit_ms
            if result.entries:
                try:
                    await self._writer.commit(result.entries)
                    stats.entries_committed += len(result.entries)
                except Exception:  # noqa: BLE001 - retried at the next visit
                    log.warning("journal of %s not committed yet; retrying later", account_id)
                    next_ms = now_ms + self._drain_ms
            stats.accounts += 1
            stats.sessions_closed += result.closed_sessions
            await self._store.settle(shard, account_id, version, next_ms)
        except Exception:
            # The lease runs out and the account is claimed again.
            log.exception("sweeping account %s failed", account_id)

    async def backstop_once(self) -> int:
        """Index every account that holds reservations or journal entries (scan)."""
        now_ms = to_ms(self._clock.now())
        count = 0
        async for account_id in self._store.scan_accounts_with_work():
            await self._store.touch(account_id, now_ms)
            count += 1
        return count


class Maintenance:
    """Bucket expiry announcements, voucher repairs, balance checkpoints and catalog refreshes."""

    def __init__(
        self,
        handlers: ChargingHandlers,
        uow_factory: Callable[[], ChargingUnitOfWork],
        catalog: ServiceCatalog,
        clock: Clock,
        *,
        warning: timedelta,
        checkpoint_entries: int = 10_000,
        settle_delay: timedelta = timedelta(seconds=5),
    ) -> None:
        self._handlers = handlers
        self._uow_factory = uow_factory
        self._catalog = catalog
        self._clock = clock
        self._warning = warning
        self._checkpoint_entries = checkpoint_entries
        self._settle_delay = settle_delay

    def announce_buckets_once(self, limit: int = 500) -> int:
        """Publish BucketExpiring / BucketExpired once per bucket (through the outbox)."""
        now = self._clock.now()
        count = 0
        with self._uow_factory() as uow:
            for expired, buckets in (
                (False, uow.buckets.expiring(now, now + self._warning, limit)),
                (True, uow.buckets.expired(now, limit)),
            ):
                balances: dict[str, dict[str, int]] = {}
                for bucket in buckets:
                    if bucket.account_id not in balances:
                        balances[bucket.account_id] = uow.ledger.balances(bucket.account_id)
                    remaining = balances[bucket.account_id].get(bucket.bucket_id, 0)
                    assert bucket.valid_until is not None
                    kind = BucketExpired if expired else BucketExpiring
                    if remaining > 0 or expired:
                        uow.publish(
                            kind(
                                account_id=bucket.account_id,
                                bucket_id=bucket.bucket_id,
                                unit=bucket.unit.key,
                                remaining=remaining,
                                valid_until=bucket.valid_until,
                                label=bucket.label,
                            )
                        )
                        count += 1
                    uow.buckets.mark_announced(bucket, expired=expired, now=now)
            uow.commit()
        return count

    async def forfeit_expired_once(self, limit: int = 500) -> int:
        """Forfeit what ended buckets still have available into the ledger (ADR 0021).

        A bucket is settled (skipped from then on) once nothing is available or
        reserved; one a session still holds is visited again by later passes, so
        what the session gives back is forfeited too. Returns the entries written.
        """
        now = self._clock.now()

        def load() -> list[Bucket]:
            with self._uow_factory() as uow:
                return uow.buckets.expired_unsettled(now, limit)

        written = 0
        settled: list[Bucket] = []
        for bucket in await asyncio.to_thread(load):
            try:
                forfeited = await self._handlers.forfeit_expired(bucket)
            except Exception:
                log.exception(
                    "could not forfeit bucket %s of account %s", bucket.bucket_id, bucket.account_id
                )
                continue
            if forfeited.entry is not None:
                written += 1
            if forfeited.available <= 0 and forfeited.reserved == 0:
                settled.append(bucket)

        def settle() -> None:
            with self._uow_factory() as uow:
                for bucket in settled:
                    uow.buckets.mark_settled(bucket, now)
                uow.commit()

        if settled:
            await asyncio.to_thread(settle)
        return written

    async def repair_vouchers_once(self, older_than: timedelta = timedelta(minutes=1)) -> int:
        before = self._clock.now() - older_than

        def load() -> list[tuple[str, str, Quantity]]:
            with self._uow_factory() as uow:
                return [
                    (v.redeemed_by or "", v.voucher_id, v.value)
                    for v in uow.vouchers.redeemed_without_credit(before, 100)
                ]

        repaired = 0
        for account_id, voucher_id, value in await asyncio.to_thread(load):
            try:
                await self._handlers.credit_voucher(account_id, voucher_id, value)
                repaired += 1
            except Exception:
                log.exception("could not finish the redemption of voucher %s", voucher_id)
        return repaired

    def checkpoint_once(self, chunk: int = 200_000, entries: int | None = None) -> int:
        """Checkpoint the balances of accounts with ``checkpoint_entries`` or more ledger
        entries since their last checkpoint (ADR 0036); returns the checkpoints written.

        A checkpoint covers entries up to a seq only once every transaction that could
        still commit an entry below it has ended: the pass notes the newest seq (the
        candidate) and uses it ``settle_delay`` (the rebuild fence: longer than any ledger
        transaction) later. Each pass reads at most ``chunk`` new entries' account ids;
        a pass that lost the race for the cursor to another process changes nothing.
        ``entries`` overrides the threshold (tests).
        """
        now = self._clock.now()
        with self._uow_factory() as uow:
            checkpoints = uow.checkpoints
            scanned, candidate, candidate_at = checkpoints.cursor()
            settled = candidate_at is not None and candidate_at <= now - self._settle_delay
            horizon = candidate if settled else scanned
            through = min(horizon, scanned + chunk)
            written = 0
            if through > scanned:
                due = checkpoints.add_pending(
                    checkpoints.counts(scanned, through), entries or self._checkpoint_entries
                )
                for account_id in due:
                    written += checkpoints.checkpoint(account_id, through, now)
            if candidate_at is None or (settled and through >= candidate):
                candidate, candidate_at = checkpoints.latest_seq(), now
            if not checkpoints.save_cursor(scanned, through, candidate, candidate_at):
                return 0  # another process's pass got there first: its work stands
            uow.commit()
        if written:
            log.info("checkpointed the balances of %d accounts through seq %d", written, through)
        return written

    async def run_once(self) -> None:
        # Announce first: BucketExpired tells what was left before it is forfeited.
        await asyncio.to_thread(self.announce_buckets_once)
        await self.forfeit_expired_once()
        await self.repair_vouchers_once()
        await asyncio.to_thread(self.checkpoint_once)
        await self._catalog.reload()


async def every(
    interval: float,
    stop: asyncio.Event,
    work: Callable[[], Awaitable[object]],
    name: str,
    clock: Clock | None = None,
) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop``; failures are logged, not fatal.

    With a test clock, a move of the clock runs ``work`` at once (ADR 0037).
    """
    while not stop.is_set():
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; continuing", name)
        if clock is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
        else:
            await clock_sleep(clock, interval, stop=stop)
