"""Balances and buckets: every credit, adjustment and bucket change, and balance reads."""

from __future__ import annotations

import asyncio
from typing import Any

from services.charging.domain.buckets import Bucket, display_order
from services.charging.domain.instants import to_ms
from services.charging.domain.ledger import EntryKind, LedgerEntry
from services.charging.domain.units import Unit
from services.charging.domain.wallet import bucket_meta
from services.charging.service_layer.commands import (
    AccountBalance,
    Adjust,
    BalanceLine,
    CloseBucket,
    CreateBucket,
    Credited,
    Forfeited,
    TopUp,
    UpdateBucket,
    fingerprint,
)
from services.charging.service_layer.handlers.base import (
    HandlersBase,
    bucket_of,
    ledger_entry_of,
    policy_of,
    state_of,
)
from services.charging.service_layer.ports import ScriptResult
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.ids import new_id


class Buckets(HandlersBase):
    """Balances and buckets: create, top up, adjust, close, edit, forfeit, read."""

    # -- buckets and credits ------------------------------------------------------------------
    async def _replayed(
        self, operation: str, account_id: str, request_id: str, digest: str
    ) -> tuple[str | None, bool]:
        """(resource of a committed repeat, whether the account exists) from SQL."""
        if not request_id:
            return None, True

        def look() -> tuple[str | None, bool]:
            with self._uow() as uow:
                found = uow.replayed_resource(
                    self._scope(operation, account_id), request_id, digest
                )
                return found, uow.accounts.get(account_id) is not None

        return await asyncio.to_thread(look)

    async def create_bucket(self, command: CreateBucket) -> BalanceLine:
        digest = fingerprint(command)
        replayed, _ = await self._replayed("bucket", command.account_id, command.request_id, digest)
        if replayed is not None:
            return await self._line(command.account_id, replayed)
        bucket = Bucket(
            bucket_id=new_id("bkt"),
            account_id=command.account_id,
            unit=command.unit,
            priority=command.priority,
            valid_from=command.valid_from,
            valid_until=command.valid_until,
            services=command.services,
            rating_groups=command.rating_groups,
            label=command.label,
            created_at=self.clock.now(),
        )
        payload = self._credit_payload(
            op="CREATE",
            bucket_id=bucket.bucket_id,
            unit=command.unit,
            amount=command.initial,
            kind=EntryKind.BUCKET_GRANT,
            scope="bucket",
            request_id=command.request_id,
            digest=digest,
        )
        payload["meta"] = bucket_meta(bucket)
        result = await self._credit(
            command.account_id, "bucket", command.request_id, payload, digest, "initial_amount"
        )
        return await self._line(command.account_id, str(result.answer["b"]))

    async def top_up(self, command: TopUp) -> Credited:
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="TOPUP",
            scope="topup",
            unit=command.amount.unit,
            amount=command.amount.amount,
            kind=EntryKind.TOP_UP,
            amount_field="amount",
            reference=command.reference,
        )

    async def adjust(self, command: Adjust) -> Credited:
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="ADJUST",
            scope="adjust",
            unit=command.delta.unit,
            amount=command.delta.amount,
            kind=EntryKind.ADJUSTMENT,
            amount_field="delta",
            reason=command.reason,
        )

    async def close_bucket(self, command: CloseBucket) -> Credited:
        """End a bucket now and forfeit what it has available (ADR 0021)."""
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="CLOSE",
            scope="close",
            unit=None,  # the amount is what the bucket has available
            amount=0,
            kind=EntryKind.EXPIRY,
            amount_field="bucket_id",
            reason=command.reason,
        )

    async def update_bucket(self, command: UpdateBucket) -> Credited:
        """Change a live bucket's priority, end or label; no amount moves (ADR 0021)."""
        changes: dict[str, Any] = {}
        if command.priority is not None:
            changes["p"] = command.priority
        if command.clear_valid_until:
            changes["t"] = 0
        elif command.valid_until is not None:
            changes["t"] = to_ms(command.valid_until)
        if command.label is not None:
            changes["label"] = command.label
        return await self._bucket_change(
            command,
            command.account_id,
            command.bucket_id,
            op="EDIT",
            scope="edit",
            unit=None,
            amount=0,
            kind=EntryKind.ADJUSTMENT,  # not used: nothing moves
            amount_field="bucket",
            edit=changes,
        )

    async def _bucket_change(
        self,
        command: TopUp | Adjust | CloseBucket | UpdateBucket,
        account_id: str,
        bucket_id: str,
        *,
        op: str,
        scope: str,
        unit: Unit | None,
        amount: int,
        kind: EntryKind,
        amount_field: str,
        reference: str = "",
        reason: str = "",
        edit: dict[str, Any] | None = None,
    ) -> Credited:
        """One operator or customer change to one bucket, idempotent by request id."""
        digest = fingerprint(command)
        replayed, _ = await self._replayed(scope, account_id, command.request_id, digest)
        if replayed is not None:
            return await self._credited(account_id, replayed, bucket_id)
        payload = self._credit_payload(
            op=op,
            bucket_id=bucket_id,
            unit=unit,
            amount=amount,
            kind=kind,
            scope=scope,
            request_id=command.request_id,
            digest=digest,
            reference=reference,
            reason=reason,
        )
        if edit is not None:
            payload["edit"] = edit
        result = await self._credit(
            account_id, scope, command.request_id, payload, digest, amount_field
        )
        return await self._credited_from(account_id, result)

    async def forfeit_expired(self, bucket: Bucket) -> Forfeited:
        """Debit what an ended bucket still has available, as an EXPIRY ledger entry.

        Reserved units stay with their sessions (usage under a grant is always
        debited); what a session gives back later is forfeited by a later call.
        Repeating the call is harmless: the second finds nothing available.
        """
        assert bucket.valid_until is not None
        payload = self._credit_payload(
            op="EXPIRE",
            bucket_id=bucket.bucket_id,
            unit=bucket.unit,
            amount=0,
            kind=EntryKind.EXPIRY,
            scope="expire",
            request_id="",
            digest="",
            reason=f"validity ended {bucket.valid_until.isoformat()}",
        )
        result = await self._credit(bucket.account_id, "expire", "", payload, "", "bucket_id")
        entry_id = str(result.answer.get("e", ""))
        entry = next(
            (ledger_entry_of(e) for e in result.entries if e.entry_id == entry_id and entry_id),
            None,
        )
        return Forfeited(entry, int(result.answer["a"]), int(result.answer["r"]))

    def _credit_payload(
        self,
        *,
        op: str,
        bucket_id: str,
        unit: Unit | None,
        amount: int,
        kind: EntryKind,
        scope: str,
        request_id: str,
        digest: str,
        reference: str = "",
        reason: str = "",
    ) -> dict[str, Any]:
        return {
            "op": op,
            "acct": "",
            "now": to_ms(self.clock.now()),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
            "b": bucket_id,
            "u": unit.key if unit is not None else "",
            "q": str(amount),
            "ek": kind.value,
            "ref": reference,
            "why": reason,
            "scope": scope,
            "rid": request_id,
            "fp": digest,
        }

    async def _credit(
        self,
        account_id: str,
        scope: str,
        request_id: str,
        payload: dict[str, Any],
        digest: str,
        amount_field: str,
    ) -> ScriptResult:
        payload["acct"] = account_id
        # Without a request id the call still needs a key of its own (never a replay).
        key = request_id or new_id("once")
        result = await self._run(
            account_id, lambda: self.store.credit(account_id, scope, key, payload)
        )
        if result.status == "NOBUCKET":
            raise NotFound(
                f"account {account_id} has no bucket {payload['b']!r}",
                reason="BUCKET_NOT_FOUND",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "UNIT":
            raise InvalidArgument.field(amount_field, "is not in the bucket's unit")
        if result.status == "TOOBIG":
            raise InvalidArgument.field(
                amount_field, "would take the bucket past the largest balance (2^52 units)"
            )
        if result.status == "EXISTS":
            raise Unavailable("bucket id collision; retry")
        if result.status == "MAIN":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} is the main bucket of its "
                "currency (the credit line): adjust it instead",
                reason="MAIN_BUCKET",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "BADEND":
            raise InvalidArgument.field(
                "bucket.valid_until", "must be after now and after the bucket's valid_from"
            )
        if result.status == "ENDED":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} has ended: "
                "it takes no credit and no change",
                reason="BUCKET_ENDED",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        if result.status == "LIVE":
            raise FailedPrecondition(
                f"bucket {payload['b']!r} of account {account_id} is still valid",
                reason="BUCKET_STILL_VALID",
                metadata={"account_id": account_id, "bucket_id": str(payload["b"])},
            )
        self._check_replay(result, digest)
        await self._durable(account_id, result)
        return result

    async def _credited_from(self, account_id: str, result: ScriptResult) -> Credited:
        entry_id = str(result.answer.get("e", ""))
        entry = None
        for journal_entry in result.entries:
            if journal_entry.entry_id == entry_id:
                entry = ledger_entry_of(journal_entry)
        if entry is None and entry_id:
            entry = await asyncio.to_thread(self._entry, entry_id)
        return Credited(entry, await self._line(account_id, str(result.answer["b"])))

    async def _credited(self, account_id: str, entry_id: str, bucket_id: str) -> Credited:
        entry = await asyncio.to_thread(self._entry, entry_id)
        return Credited(
            entry, await self._line(account_id, entry.bucket_id if entry else bucket_id)
        )

    def _entry(self, entry_id: str) -> LedgerEntry | None:
        with self._uow() as uow:
            return uow.ledger.get(entry_id)

    async def _line(self, account_id: str, bucket_id: str) -> BalanceLine:
        balance = await self.balance(account_id)
        for line in balance.lines:
            if line.bucket.bucket_id == bucket_id:
                return line
        raise NotFound(
            f"account {account_id} has no bucket {bucket_id!r}", reason="BUCKET_NOT_FOUND"
        )

    async def balance(self, account_id: str) -> AccountBalance:
        view = await self._require_account(account_id)
        now = self.clock.now()
        buckets = {b.bucket_id: bucket_of(account_id, b.bucket_id, b.meta) for b in view.buckets}
        amounts = {b.bucket_id: b for b in view.buckets}
        lines = tuple(
            BalanceLine(
                bucket=bucket,
                available=amounts[bucket.bucket_id].available,
                reserved=amounts[bucket.bucket_id].reserved,
                usable=bucket.usable_at(now),
            )
            for bucket in display_order(buckets.values())
        )
        return AccountBalance(
            account_id, policy_of(account_id, view.fields), state_of(view.fields), lines
        )
