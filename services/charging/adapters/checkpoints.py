"""Balance checkpoints in SQL (ADR 0036): a bucket's balance is its checkpoint amount
plus the ledger entries after the checkpoint's seq; the bookkeeping of the pass that
writes them (entries counted per account since their checkpoint, the pass's cursor)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.charging.adapters import orm

if TYPE_CHECKING:
    from services.charging.adapters.repositories import SqlLedgerRepository


class SqlCheckpointRepository:
    """Balance checkpoints (ADR 0036) and the bookkeeping of the pass that makes them."""

    _CURSOR = "ledger"

    def __init__(self, session: Session, ledger: SqlLedgerRepository) -> None:
        self._session = session
        self._ledger = ledger

    def cursor(self) -> tuple[int, int, datetime | None]:
        """(seq scanned so far, candidate seq, when it was seen)."""
        c = orm.ledger_checkpoint_cursor
        row = self._session.execute(select(c).where(c.c.name == self._CURSOR)).first()
        if row is None:
            return 0, 0, None
        return int(row.scanned_seq), int(row.candidate_seq), row.candidate_at

    def save_cursor(
        self, was: int, scanned: int, candidate: int, candidate_at: datetime | None
    ) -> bool:
        """Move the cursor on from ``was``; False when another pass moved it first."""
        c = orm.ledger_checkpoint_cursor
        values = {
            "scanned_seq": scanned,
            "candidate_seq": candidate,
            "candidate_at": candidate_at,
        }
        exists = self._session.execute(
            select(c.c.scanned_seq).where(c.c.name == self._CURSOR)
        ).first()
        if exists is None:
            self._session.execute(c.insert().values(name=self._CURSOR, **values))
            return was == 0
        done = self._session.execute(
            update(c).where(c.c.name == self._CURSOR, c.c.scanned_seq == was).values(**values)
        )
        return bool(getattr(done, "rowcount", 0))

    def latest_seq(self) -> int:
        entries = orm.ledger_entries
        return int(self._session.execute(select(func.max(entries.c.seq))).scalar() or 0)

    def counts(self, after_seq: int, through_seq: int) -> dict[str, int]:
        """Entries per account in (after_seq, through_seq] (a range of the primary key)."""
        entries = orm.ledger_entries
        rows = self._session.execute(
            select(entries.c.account_id, func.count())
            .where(entries.c.seq > after_seq, entries.c.seq <= through_seq)
            .group_by(entries.c.account_id)
        ).all()
        return {str(account_id): int(n) for account_id, n in rows}

    def add_pending(self, counts: dict[str, int], threshold: int) -> list[str]:
        """Count new entries per account; the accounts now due a checkpoint."""
        pending = orm.ledger_checkpoint_pending
        due = []
        for account_id, n in counts.items():
            row = self._session.execute(
                select(pending.c.entries).where(pending.c.account_id == account_id)
            ).first()
            total = (int(row.entries) if row else 0) + n
            if total >= threshold:
                due.append(account_id)
            if row is None:
                self._session.execute(pending.insert().values(account_id=account_id, entries=total))
            else:
                self._session.execute(
                    update(pending).where(pending.c.account_id == account_id).values(entries=total)
                )
        return due

    def checkpoint(self, account_id: str, through_seq: int, now: datetime) -> bool:
        """Write the account's balances through ``through_seq`` (from its previous checkpoint
        and the entries after it); False when the checkpoint is already that recent."""
        checkpoint = orm.ledger_checkpoints
        rows = self._session.execute(
            select(checkpoint.c.bucket_id, checkpoint.c.amount, checkpoint.c.through_seq).where(
                checkpoint.c.account_id == account_id
            )
        ).all()
        previous = max((int(r.through_seq) for r in rows), default=0)
        if previous >= through_seq:
            return False
        totals = {str(r.bucket_id): int(r.amount) for r in rows}
        for bucket_id, total in self._ledger.sums(account_id, previous, through_seq).items():
            totals[bucket_id] = totals.get(bucket_id, 0) + total
        self._session.execute(checkpoint.delete().where(checkpoint.c.account_id == account_id))
        if totals:
            self._session.execute(
                checkpoint.insert(),
                [
                    {
                        "account_id": account_id,
                        "bucket_id": bucket_id,
                        "through_seq": through_seq,
                        "amount": amount,
                        "created_at": now,
                    }
                    for bucket_id, amount in totals.items()
                ],
            )
        pending = orm.ledger_checkpoint_pending
        self._session.execute(pending.delete().where(pending.c.account_id == account_id))
        return True
