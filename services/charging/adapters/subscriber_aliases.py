"""The ``subscriber_aliases`` table: which account a service identifier names (ADR 0058)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.charging.adapters import orm

_CHUNK = 500  # keys per IN (...): far below every driver's parameter limit

table = orm.subscriber_aliases


class SqlSubscriberAliasRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, alias: str, account_id: str, version: int, now: datetime) -> bool:
        """``alias`` names ``account_id`` from ``version`` on, unless a newer claim holds
        it; True when stored. The row is locked (FOR UPDATE on PostgreSQL), so two
        claims of one alias are ordered by version, not by who wrote last."""
        held = self.session.execute(
            select(table.c.account_id, table.c.version)
            .where(table.c.alias == alias)
            .with_for_update()
        ).first()
        if held is None:
            self.session.execute(
                insert(table).values(
                    alias=alias, account_id=account_id, version=version, updated_at=now
                )
            )
            return True
        if held.version > version:
            return False
        self.session.execute(
            update(table)
            .where(table.c.alias == alias)
            .values(account_id=account_id, version=version, updated_at=now)
        )
        return True

    def owners(self, aliases: Collection[str]) -> dict[str, str]:
        wanted = list(aliases)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            rows = self.session.execute(
                select(table.c.alias, table.c.account_id).where(
                    table.c.alias.in_(wanted[start : start + _CHUNK])
                )
            )
            found.update({alias: account_id for alias, account_id in rows})
        return found


__all__ = ["SqlSubscriberAliasRepository"]
