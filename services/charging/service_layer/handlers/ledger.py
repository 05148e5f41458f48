"""Ledger queries: an account's movements, a page at a time."""

from __future__ import annotations

import asyncio

from services.charging.domain.ledger import LedgerEntry
from services.charging.service_layer.handlers.base import HandlersBase
from services.charging.service_layer.rebuild import account_not_found


class LedgerQueries(HandlersBase):
    """Pages of an account's ledger; whose an account is."""

    async def account_owner(self, account_id: str) -> str | None:
        """The customer owning the account, None when unknown (or never learnt)."""

        def load() -> str | None:
            with self._uow() as uow:
                return uow.accounts.customer_of(account_id)

        return await asyncio.to_thread(load)

    async def ledger_page(
        self, account_id: str, bucket_id: str | None, after_seq: int, limit: int
    ) -> list[LedgerEntry]:
        def load() -> list[LedgerEntry]:
            with self._uow() as uow:
                if uow.accounts.get(account_id) is None:
                    raise account_not_found(account_id)
                return uow.ledger.page(account_id, bucket_id, after_seq, limit)

        return await asyncio.to_thread(load)
