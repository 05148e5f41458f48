"""SQL repositories of charging and its unit of work (the kit's outbox included)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from services.charging.adapters import orm
from services.charging.adapters.checkpoints import SqlCheckpointRepository
from services.charging.adapters.subscriber_aliases import SqlSubscriberAliasRepository
from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    FinalUnitAction,
    StateChange,
)
from services.charging.domain.buckets import Bucket
from services.charging.domain.ledger import Direction, EntryKind, LedgerEntry
from services.charging.domain.services import Charging, ServiceDefinition
from services.charging.domain.units import Quantity, Unit, UnitKind
from services.charging.domain.vouchers import Voucher
from services.charging.service_layer.unit_of_work import AccountRecord, ChargingUnitOfWork
from services.common.ids import new_id
from services.common.sql_uow import SqlUnitOfWork


def bucket_from_row(row: Row[Any]) -> Bucket:
    return Bucket(
        bucket_id=row.bucket_id,
        account_id=row.account_id,
        unit=Unit.from_key(row.unit),
        priority=row.priority,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        services=frozenset(json.loads(row.services)),
        rating_groups=frozenset(int(g) for g in json.loads(row.rating_groups)),
        label=row.label,
        main=bool(row.main),
        created_at=row.created_at,
        version=int(row.meta_version),
    )


def entry_from_row(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row.entry_id,
        account_id=row.account_id,
        bucket_id=row.bucket_id,
        direction=Direction(row.direction),
        amount=Quantity(Unit.from_key(row.unit), int(row.amount)),
        kind=EntryKind(row.kind),
        created_at=row.created_at,
        session_id=row.session_id,
        request_number=int(row.request_number),
        rating_group=int(row.rating_group),
        reference=row.reference,
        reason=row.reason,
        seq=int(row.seq),
    )


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, account_id: str) -> AccountRecord | None:
        a, s = orm.accounts, orm.account_states
        row = self._session.execute(
            select(a, s.c.state, s.c.state_version)
            .outerjoin(s, s.c.account_id == a.c.account_id)
            .where(a.c.account_id == account_id)
        ).first()
        if row is None:
            return None
        policy = AccountPolicy(
            account_id=row.account_id,
            mode=BillingMode(row.mode),
            currency=row.currency,
            credit_limit=int(row.credit_limit),
            low_balance=int(row.low_balance) if row.low_balance is not None else None,
            final_unit_action=FinalUnitAction(row.final_unit_action),
            redirect_address=row.redirect_address,
            restriction_filter_id=row.restriction_filter_id,
        )
        return AccountRecord(
            policy=policy,
            version=int(row.version),
            updated_at=row.updated_at,
            state=AccountState(row.state) if row.state else AccountState.ACTIVE,
            state_version=int(row.state_version or 0),
        )

    def add(self, policy: AccountPolicy, now: datetime) -> None:
        self._session.execute(
            orm.accounts.insert().values(
                account_id=policy.account_id,
                mode=policy.mode.value,
                currency=policy.currency,
                credit_limit=policy.credit_limit,
                low_balance=policy.low_balance,
                final_unit_action=policy.final_unit_action.value,
                redirect_address=policy.redirect_address,
                restriction_filter_id=policy.restriction_filter_id,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        # The main money bucket exists from the start (top-ups land there).
        self._session.execute(
            orm.buckets.insert().values(
                account_id=policy.account_id,
                bucket_id=f"main-{policy.currency}",
                unit=f"m:{policy.currency}",
                priority=100,
                valid_from=None,
                valid_until=None,
                services="[]",
                rating_groups="[]",
                label="",
                main=True,
                created_at=now,
            )
        )

    def state(self, account_id: str) -> tuple[AccountState, int] | None:
        s = orm.account_states
        row = self._session.execute(
            select(s.c.state, s.c.state_version).where(s.c.account_id == account_id)
        ).first()
        return (AccountState(row.state), int(row.state_version)) if row else None

    def facts_version(self, account_id: str) -> int | None:
        a = orm.accounts
        row = self._session.execute(
            select(a.c.facts_version).where(a.c.account_id == account_id)
        ).first()
        return int(row.facts_version) if row else None

    def record_facts_version(self, account_id: str, version: int) -> None:
        a = orm.accounts
        self._session.execute(
            update(a)
            .where(a.c.account_id == account_id, a.c.facts_version < version)
            .values(facts_version=version)
        )

    def customer_of(self, account_id: str) -> str | None:
        a = orm.accounts
        row = self._session.execute(
            select(a.c.customer_id).where(a.c.account_id == account_id)
        ).first()
        return row.customer_id if row else None

    def record_customer(self, account_id: str, customer_id: str) -> None:
        a = orm.accounts
        self._session.execute(
            update(a).where(a.c.account_id == account_id).values(customer_id=customer_id)
        )

    def record_state(self, change: StateChange, now: datetime) -> bool:
        s = orm.account_states
        current = self.state(change.account_id)
        if current is None:
            self._session.execute(
                s.insert().values(
                    account_id=change.account_id,
                    state=change.state.value,
                    state_version=change.version,
                    reason=change.reason[:256],
                    updated_at=now,
                )
            )
            return True
        if current[1] > change.version:
            return False
        self._session.execute(
            update(s)
            .where(s.c.account_id == change.account_id, s.c.state_version <= change.version)
            .values(
                state=change.state.value,
                state_version=change.version,
                reason=change.reason[:256],
                updated_at=now,
            )
        )
        return True


class SqlBucketRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def for_account(self, account_id: str) -> list[Bucket]:
        rows = self._session.execute(
            select(orm.buckets).where(orm.buckets.c.account_id == account_id)
        ).all()
        return [bucket_from_row(r) for r in rows]

    def get(self, account_id: str, bucket_id: str) -> Bucket | None:
        b = orm.buckets
        row = self._session.execute(
            select(b).where(b.c.account_id == account_id, b.c.bucket_id == bucket_id)
        ).first()
        return bucket_from_row(row) if row else None

    def expiring(self, now: datetime, until: datetime, limit: int) -> list[Bucket]:
        b = orm.buckets
        rows = self._session.execute(
            select(b)
            .where(
                b.c.valid_until > now,
                b.c.valid_until <= until,
                b.c.expiring_notified_at.is_(None),
            )
            .order_by(b.c.valid_until)
            .limit(limit)
        ).all()
        return [bucket_from_row(r) for r in rows]

    def expired(self, now: datetime, limit: int) -> list[Bucket]:
        b = orm.buckets
        rows = self._session.execute(
            select(b)
            .where(b.c.valid_until <= now, b.c.expired_notified_at.is_(None))
            .order_by(b.c.valid_until)
            .limit(limit)
        ).all()
        return [bucket_from_row(r) for r in rows]

    def mark_announced(self, bucket: Bucket, *, expired: bool, now: datetime) -> None:
        b = orm.buckets
        column = "expired_notified_at" if expired else "expiring_notified_at"
        values: dict[str, Any] = {column: now}
        if expired:
            values["expiring_notified_at"] = func.coalesce(b.c.expiring_notified_at, now)
        self._session.execute(
            update(b)
            .where(b.c.account_id == bucket.account_id, b.c.bucket_id == bucket.bucket_id)
            .values(**values)
        )

    def expired_unsettled(self, now: datetime, limit: int) -> list[Bucket]:
        b = orm.buckets
        rows = self._session.execute(
            select(b)
            .where(b.c.valid_until <= now, b.c.settled_at.is_(None))
            .order_by(b.c.valid_until)
            .limit(limit)
        ).all()
        return [bucket_from_row(r) for r in rows]

    def mark_settled(self, bucket: Bucket, now: datetime) -> None:
        b = orm.buckets
        self._session.execute(
            update(b)
            .where(b.c.account_id == bucket.account_id, b.c.bucket_id == bucket.bucket_id)
            .values(settled_at=now)
        )


class SqlLedgerRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def page(
        self, account_id: str, bucket_id: str | None, after_seq: int, limit: int
    ) -> list[LedgerEntry]:
        entries = orm.ledger_entries
        query = select(entries).where(entries.c.account_id == account_id, entries.c.seq > after_seq)
        if bucket_id:
            query = query.where(entries.c.bucket_id == bucket_id)
        rows = self._session.execute(query.order_by(entries.c.seq).limit(limit)).all()
        return [entry_from_row(r) for r in rows]

    def get(self, entry_id: str) -> LedgerEntry | None:
        entries = orm.ledger_entries
        row = self._session.execute(select(entries).where(entries.c.entry_id == entry_id)).first()
        return entry_from_row(row) if row else None

    def balances(self, account_id: str) -> dict[str, int]:
        """Credits minus debits per bucket: the account's checkpoint plus the entries after
        it (ADR 0036), so the rows read are bounded however old the account is."""
        checkpoint = orm.ledger_checkpoints
        rows = self._session.execute(
            select(checkpoint.c.bucket_id, checkpoint.c.amount, checkpoint.c.through_seq).where(
                checkpoint.c.account_id == account_id
            )
        ).all()
        through = max((int(r.through_seq) for r in rows), default=0)
        totals = {str(r.bucket_id): int(r.amount) for r in rows}
        for bucket_id, total in self.sums(account_id, through, None).items():
            totals[bucket_id] = totals.get(bucket_id, 0) + total
        return totals

    def sums(self, account_id: str, after_seq: int, through_seq: int | None) -> dict[str, int]:
        """Credits minus debits per bucket of the entries in (after_seq, through_seq]."""
        entries = orm.ledger_entries
        signed = case(
            (entries.c.direction == Direction.CREDIT.value, entries.c.amount),
            else_=-entries.c.amount,
        )
        query = select(entries.c.bucket_id, func.sum(signed)).where(
            entries.c.account_id == account_id, entries.c.seq > after_seq
        )
        if through_seq is not None:
            query = query.where(entries.c.seq <= through_seq)
        rows = self._session.execute(query.group_by(entries.c.bucket_id)).all()
        # PostgreSQL sums bigints as numeric: int() keeps them exact.
        return {bucket_id: int(total) for bucket_id, total in rows}

    def references_present(self, account_id: str, references: list[str]) -> set[str]:
        if not references:
            return set()
        entries = orm.ledger_entries
        found: set[str] = set()
        for start in range(0, len(references), 500):
            chunk = references[start : start + 500]
            rows = self._session.execute(
                select(entries.c.reference).where(
                    entries.c.account_id == account_id, entries.c.reference.in_(chunk)
                )
            ).all()
            found.update(r.reference for r in rows)
        return found

    def by_reference(self, account_id: str, reference: str) -> LedgerEntry | None:
        entries = orm.ledger_entries
        row = self._session.execute(
            select(entries)
            .where(entries.c.account_id == account_id, entries.c.reference == reference)
            .order_by(entries.c.seq)
            .limit(1)
        ).first()
        return entry_from_row(row) if row else None

    def open_sessions(self, account_id: str, since: datetime, after: str, limit: int) -> list[str]:
        """Ids of the sessions whose last answer left them open, answered since ``since``,
        after ``after`` in id order (ADR 0035)."""
        s = orm.cc_sessions
        rows = self._session.execute(
            select(s.c.session_id)
            .where(
                s.c.account_id == account_id,
                s.c.state == "O",
                s.c.updated_at >= since,
                s.c.session_id > after,
            )
            .order_by(s.c.session_id)
            .limit(limit)
        ).all()
        return [str(r.session_id) for r in rows]

    def recent_sessions(self, account_id: str, since: datetime) -> list[dict[str, Any]]:
        s = orm.cc_sessions
        rows = self._session.execute(
            select(s.c.session_id, s.c.last_request_number, s.c.state, s.c.answer).where(
                s.c.account_id == account_id, s.c.updated_at >= since
            )
        ).all()
        return [
            {
                "sid": r.session_id,
                "rn": int(r.last_request_number),
                "st": r.state,
                "ans": r.answer,
            }
            for r in rows
        ]


class SqlVoucherRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add_batch(
        self,
        batch_id: str,
        label: str,
        value: Quantity,
        expire_time: datetime,
        hashes: list[tuple[str, str]],
        now: datetime,
    ) -> None:
        self._session.execute(
            orm.voucher_batches.insert().values(
                batch_id=batch_id,
                label=label,
                count=len(hashes),
                unit=value.unit.key,
                amount=value.amount,
                expire_time=expire_time,
                created_at=now,
            )
        )
        self._session.execute(
            orm.vouchers.insert(),
            [
                {
                    "voucher_id": voucher_id,
                    "batch_id": batch_id,
                    "code_hash": digest,
                    "unit": value.unit.key,
                    "amount": value.amount,
                    "expire_time": expire_time,
                    "created_at": now,
                }
                for voucher_id, digest in hashes
            ],
        )

    def batch(self, batch_id: str) -> tuple[int, datetime] | None:
        b = orm.voucher_batches
        row = self._session.execute(
            select(b.c.count, b.c.expire_time).where(b.c.batch_id == batch_id)
        ).first()
        return (int(row[0]), row[1]) if row else None

    def _voucher(self, row: Row[Any]) -> Voucher:
        return Voucher(
            voucher_id=row.voucher_id,
            batch_id=row.batch_id,
            value=Quantity(Unit.from_key(row.unit), int(row.amount)),
            expire_time=row.expire_time,
            redeemed_by=row.redeemed_by,
            redeem_request=row.redeem_request,
            redeemed_at=row.redeemed_at,
        )

    def find(self, code_hash: str) -> Voucher | None:
        v = orm.vouchers
        row = self._session.execute(select(v).where(v.c.code_hash == code_hash)).first()
        return self._voucher(row) if row else None

    def redeem(self, voucher_id: str, account_id: str, request_id: str, now: datetime) -> bool:
        v = orm.vouchers
        result = self._session.execute(
            update(v)
            .where(v.c.voucher_id == voucher_id, v.c.redeemed_by.is_(None))
            .values(redeemed_by=account_id, redeem_request=request_id, redeemed_at=now)
        )
        return bool(getattr(result, "rowcount", 0))

    def redeemed_without_credit(self, before: datetime, limit: int) -> list[Voucher]:
        v, entries = orm.vouchers, orm.ledger_entries
        reference = "voucher:" + v.c.voucher_id
        rows = self._session.execute(
            select(v)
            .outerjoin(
                entries,
                and_(entries.c.account_id == v.c.redeemed_by, entries.c.reference == reference),
            )
            .where(v.c.redeemed_at.is_not(None), v.c.redeemed_at < before, entries.c.seq.is_(None))
            .limit(limit)
        ).all()
        return [self._voucher(r) for r in rows]


class SqlServiceRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> list[ServiceDefinition]:
        s = orm.service_definitions
        rows = self._session.execute(select(s).order_by(s.c.rating_group)).all()
        return [
            ServiceDefinition(
                rating_group=int(r.rating_group),
                service=r.service,
                unit_kind=UnitKind(r.unit_kind),
                unit_name=r.unit_name,
                charging=Charging(r.charging),
                default_quota=int(r.default_quota),
                validity_seconds=int(r.validity_seconds),
            )
            for r in rows
        ]

    def put(self, definition: ServiceDefinition, now: datetime) -> None:
        s = orm.service_definitions
        values = {
            "service": definition.service,
            "unit_kind": definition.unit_kind.value,
            "unit_name": definition.unit_name,
            "charging": definition.charging.value,
            "default_quota": definition.default_quota,
            "validity_seconds": definition.validity_seconds,
            "updated_at": now,
        }
        changed = self._session.execute(
            update(s).where(s.c.rating_group == definition.rating_group).values(**values)
        )
        if not getattr(changed, "rowcount", 0):
            self._session.execute(s.insert().values(rating_group=definition.rating_group, **values))


class SqlChargingUnitOfWork(SqlUnitOfWork, ChargingUnitOfWork):
    def _open(self, session: Session) -> None:
        self.accounts = SqlAccountRepository(session)
        self.buckets = SqlBucketRepository(session)
        self.ledger = SqlLedgerRepository(session)
        self.checkpoints = SqlCheckpointRepository(session, self.ledger)
        self.vouchers = SqlVoucherRepository(session)
        self.services = SqlServiceRepository(session)
        self.aliases = SqlSubscriberAliasRepository(session)


def new_voucher_id() -> str:
    return new_id("vch")
