"""Vouchers (CHG-7): batches of codes, redemption in two steps."""

from __future__ import annotations

import asyncio

from services.charging.domain.buckets import Bucket
from services.charging.domain.ledger import EntryKind
from services.charging.domain.units import Quantity
from services.charging.domain.vouchers import code_hash, voucher_code
from services.charging.domain.wallet import bucket_meta
from services.charging.service_layer.commands import (
    CreateVoucherBatch,
    Credited,
    RedeemVoucher,
    VoucherBatch,
    fingerprint,
)
from services.charging.service_layer.handlers.buckets import Buckets
from services.charging.service_layer.rebuild import account_not_found
from services.common.errors import (
    FailedPrecondition,
    NotFound,
)
from services.common.ids import new_id


class Vouchers(Buckets):
    """Voucher batches, redemption and its second step."""

    # -- vouchers ----------------------------------------------------------------------------
    async def create_voucher_batch(self, command: CreateVoucherBatch) -> VoucherBatch:
        digest = fingerprint(command)
        scope = "charging.voucher_batch"

        def create() -> VoucherBatch:
            with self._uow() as uow:
                replayed = uow.replayed_resource(scope, command.request_id, digest)
                if replayed is not None:
                    found = uow.vouchers.batch(replayed)
                    assert found is not None
                    count, expire_time = found
                    codes = tuple(
                        voucher_code(self.options.voucher_key, replayed, i) for i in range(count)
                    )
                    return VoucherBatch(replayed, codes, expire_time)
                batch_id = new_id("vbt")
                codes = tuple(
                    voucher_code(self.options.voucher_key, batch_id, i)
                    for i in range(command.count)
                )
                hashes = [(new_id("vch"), code_hash(code)) for code in codes]
                now = self.clock.now()
                uow.vouchers.add_batch(
                    batch_id, command.label, command.value, command.expire_time, hashes, now
                )
                uow.remember_request(scope, command.request_id, digest, batch_id)
                uow.commit()
                return VoucherBatch(batch_id, codes, command.expire_time)

        return await asyncio.to_thread(create)

    async def redeem_voucher(self, command: RedeemVoucher) -> Credited:
        now = self.clock.now()
        digest = code_hash(command.code)

        def claim() -> tuple[str, Quantity, bool]:
            with self._uow() as uow:
                if uow.accounts.get(command.account_id) is None:
                    raise account_not_found(command.account_id)
                voucher = uow.vouchers.find(digest)
                if voucher is None:
                    raise NotFound("no such voucher code", reason="VOUCHER_NOT_FOUND")
                if voucher.redeemed_by is not None:
                    same = voucher.redeemed_by == command.account_id and (
                        voucher.redeem_request == command.request_id
                    )
                    if not same:
                        raise FailedPrecondition(
                            "this voucher was already redeemed", reason="VOUCHER_ALREADY_REDEEMED"
                        )
                    return voucher.voucher_id, voucher.value, False
                if not voucher.usable_at(now):
                    raise FailedPrecondition("this voucher has expired", reason="VOUCHER_EXPIRED")
                if not uow.vouchers.redeem(
                    voucher.voucher_id, command.account_id, command.request_id, now
                ):
                    raise FailedPrecondition(
                        "this voucher was already redeemed", reason="VOUCHER_ALREADY_REDEEMED"
                    )
                uow.commit()
                return voucher.voucher_id, voucher.value, True

        voucher_id, value, _ = await asyncio.to_thread(claim)
        return await self.credit_voucher(command.account_id, voucher_id, value)

    async def credit_voucher(self, account_id: str, voucher_id: str, value: Quantity) -> Credited:
        """Step two of a redemption (also the repair of one a crash interrupted)."""
        reference = f"voucher:{voucher_id}"

        def committed() -> str | None:
            with self._uow() as uow:
                entry = uow.ledger.by_reference(account_id, reference)
            return entry.entry_id if entry else None

        existing = await asyncio.to_thread(committed)
        if existing is not None:
            return await self._credited(account_id, existing, "")
        if value.unit.is_money:
            payload = self._credit_payload(
                op="TOPUP",
                bucket_id="",
                unit=value.unit,
                amount=value.amount,
                kind=EntryKind.VOUCHER,
                scope="voucher",
                request_id=voucher_id,
                digest=reference,
                reference=reference,
            )
        else:
            bucket = Bucket(
                bucket_id=f"vch-{voucher_id}",
                account_id=account_id,
                unit=value.unit,
                created_at=self.clock.now(),
                label="voucher",
            )
            payload = self._credit_payload(
                op="CREATE",
                bucket_id=bucket.bucket_id,
                unit=value.unit,
                amount=value.amount,
                kind=EntryKind.VOUCHER,
                scope="voucher",
                request_id=voucher_id,
                digest=reference,
                reference=reference,
            )
            payload["meta"] = bucket_meta(bucket)
        result = await self._credit(account_id, "voucher", voucher_id, payload, reference, "code")
        return await self._credited_from(account_id, result)
