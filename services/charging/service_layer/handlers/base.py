"""The shared plumbing of charging's use cases and the records they read back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    FinalUnitAction,
)
from services.charging.domain.buckets import Bucket
from services.charging.domain.credit_control import ResultCode
from services.charging.domain.instants import from_ms
from services.charging.domain.ledger import Direction, EntryKind, LedgerEntry
from services.charging.domain.services import ServiceDefinition
from services.charging.domain.units import (
    Quantity,
    Unit,
    UnitKind,
)
from services.charging.service_layer.catalog import ServiceCatalog
from services.charging.service_layer.handlers.positions import (
    Known,
    SessionKey,
)
from services.charging.service_layer.ports import (
    AccountView,
    BalanceStore,
    JournalEntry,
    LedgerWriter,
    Pricing,
    ScriptResult,
)
from services.charging.service_layer.rebuild import AccountLoader
from services.charging.service_layer.subscribers import SubscriberDirectory
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.clock import Clock
from services.common.errors import (
    InvalidArgument,
    Unavailable,
)

log = logging.getLogger(__name__)

_RESULTS = {
    "OK": ResultCode.SUCCESS,
    "DENIED": ResultCode.END_USER_SERVICE_DENIED,
    "NOCREDIT": ResultCode.CREDIT_LIMIT_REACHED,
    "RATING": ResultCode.RATING_FAILED,
    "UNKNOWN": ResultCode.UNKNOWN_SESSION_ID,
    "NOBUCKET": ResultCode.RATING_FAILED,
    "TOOBIG": ResultCode.CREDIT_LIMIT_REACHED,
}


@dataclass(frozen=True)
class Options:
    """The knobs of the use cases (from ``ChargingSettings``)."""

    validity_seconds: int = 300
    grace_seconds: int = 30
    default_quota_time: int = 60
    default_quota_volume: int = 10 * 1024 * 1024
    default_quota_units: int = 1
    window_seconds: int = 86_400
    journal_drain_ms: int = 30_000
    voucher_key: bytes = b"reckon-charging-vouchers"
    # Sessions whose priced position this process remembers (0: always read it from Redis).
    remembered_sessions: int = 100_000
    # Subscriber names (numbers, SIP URIs, ...) a worker trusts without reading SQL (ADR 0058).
    subscriber_cache_seconds: float = 30.0


class HandlersBase:
    """What every use case shares: the ports, the options, running a script with a rebuild
    when Redis lost the account, and the durability rule."""

    def __init__(
        self,
        *,
        store: BalanceStore,
        writer: LedgerWriter,
        pricing: Pricing,
        uow_factory: Callable[[], ChargingUnitOfWork],
        catalog: ServiceCatalog,
        loader: AccountLoader,
        clock: Clock,
        options: Options,
    ) -> None:
        self.store = store
        self.writer = writer
        self.pricing = pricing
        self.uow_factory = uow_factory
        self.catalog = catalog
        self.loader = loader
        self.clock = clock
        self.options = options
        # Which account a Subscription-Id names (ADR 0058): SQL behind an in-process cache.
        self.subscribers = SubscriberDirectory(
            uow_factory, ttl_seconds=options.subscriber_cache_seconds
        )
        # The priced position each open session had after its last answer from this process
        # (insertion order = least recently answered first). A hint only: the script refuses
        # prices computed from any other position (STALE), so a position another worker or a
        # rebuild moved costs one more round trip, never a wrong charge (ADR 0019).
        self._known: dict[SessionKey, Known] = {}

    # -- plumbing ------------------------------------------------------------------------
    async def _run(
        self, account_id: str, call: Callable[[], Awaitable[ScriptResult]]
    ) -> ScriptResult:
        """Run a script; when Redis lost the account, rebuild it from SQL and run it again."""
        result = await call()
        if result.status == "NOACCOUNT":
            await self.loader.ensure_loaded(account_id)
            result = await call()
            if result.status == "NOACCOUNT":
                raise Unavailable(f"account {account_id} is being rebuilt; retry")
        return result

    async def _durable(self, account_id: str, result: ScriptResult) -> None:
        """The durability rule: the journal entries are in SQL before anyone is answered."""
        if result.touch_ms:
            await self._touch(account_id, result.touch_ms)
        if result.entries:
            await self.writer.commit(result.entries)

    async def _touch(self, account_id: str, due_ms: int) -> None:
        try:
            await self.store.touch(account_id, due_ms)
        except Exception:  # noqa: BLE001 - the sweeper's backstop scan finds the account
            log.warning("could not index account %s for the sweeper", account_id)

    def _uow(self) -> ChargingUnitOfWork:
        return self.uow_factory()

    def _default_quota(self, service: ServiceDefinition) -> int:
        if service.default_quota:
            return service.default_quota
        if service.unit_kind is UnitKind.TIME:
            return self.options.default_quota_time
        if service.unit_kind is UnitKind.VOLUME:
            return self.options.default_quota_volume
        return self.options.default_quota_units

    def _validity(self, service: ServiceDefinition) -> int:
        return service.validity_seconds or self.options.validity_seconds

    async def _require_account(self, account_id: str) -> AccountView:
        view = await self.store.read_account(account_id)
        if view is None:
            await self.loader.ensure_loaded(account_id)
            view = await self.store.read_account(account_id)
            if view is None:
                raise Unavailable(f"account {account_id} is being rebuilt; retry")
        return view

    def _scope(self, operation: str, account_id: str) -> str:
        return f"charging.{operation}:{account_id}"

    def _check_replay(self, result: ScriptResult, digest: str) -> None:
        if result.status == "REPLAY" and result.answer.get("fp") not in (None, digest):
            raise InvalidArgument.field("request_id", "was already used for a different request")


def ledger_entry_of(entry: JournalEntry) -> LedgerEntry:
    r = entry.record
    return LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        bucket_id=str(r["b"]),
        direction=Direction(str(r["d"])),
        amount=Quantity(Unit.from_key(str(r["u"])), int(r["q"])),
        kind=EntryKind(str(r["ek"])),
        created_at=from_ms(int(r["at"])),
        session_id=str(r.get("s", "")),
        request_number=int(r.get("n", 0)),
        rating_group=int(r.get("g", 0)),
        reference=str(r.get("r", "")),
        reason=str(r.get("why", "")),
    )


def bucket_of(account_id: str, bucket_id: str, meta: dict[str, Any]) -> Bucket:
    # Lua's cjson writes empty arrays as {}: accept both.
    services = meta.get("sv") or []
    groups = meta.get("rg") or []
    return Bucket(
        bucket_id=bucket_id,
        account_id=account_id,
        unit=Unit.from_key(str(meta["u"])),
        priority=int(meta.get("p", 100)),
        valid_from=from_ms(int(meta["f"])) if meta.get("f") else None,
        valid_until=from_ms(int(meta["t"])) if meta.get("t") else None,
        services=frozenset(str(s) for s in (services if isinstance(services, list) else [])),
        rating_groups=frozenset(int(g) for g in (groups if isinstance(groups, list) else [])),
        label=str(meta.get("label", "")),
        main=bool(meta.get("main")),
        created_at=from_ms(int(meta["o"])) if meta.get("o") else None,
    )


def policy_of(account_id: str, fields: dict[str, str]) -> AccountPolicy:
    low = fields.get("low")
    return AccountPolicy(
        account_id=account_id,
        mode=BillingMode(fields.get("mode", "prepaid")),
        currency=fields.get("cur", "EUR"),
        credit_limit=int(fields.get("lim", "0") or 0),
        low_balance=int(low) if low else None,
        final_unit_action=FinalUnitAction(fields.get("fua") or "terminate"),
        redirect_address=fields.get("fur", ""),
        restriction_filter_id=fields.get("fuf", ""),
    )


def state_of(fields: dict[str, str]) -> AccountState:
    try:
        return AccountState(fields.get("st", "active"))
    except ValueError:
        return AccountState.ACTIVE
