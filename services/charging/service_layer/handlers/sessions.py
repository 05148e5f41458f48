"""Credit-control sessions as operators see them: read one, list an account's open
ones, release a stuck one (ADR 0035).

A session lives in the live store (``ch:{acct:<id>}:s:<session>``): state, last
request number and type, last answer (grants, validity, what it holds and until
when), units used per rating group. The list of open sessions comes from SQL's
``cc_sessions`` (every answer is committed there before it is sent), checked
against the live store, which alone knows the sessions the supervision released.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from services.charging.domain.credit_control import RequestType, SessionState
from services.charging.domain.instants import from_ms, to_ms
from services.charging.domain.units import Quantity, Unit, UnitKind, money_unit
from services.charging.service_layer.commands import (
    ReleaseSession,
    SessionGroupView,
    SessionView,
    fingerprint,
)
from services.charging.service_layer.handlers.base import HandlersBase
from services.charging.service_layer.ports import AccountView
from services.charging.service_layer.rebuild import account_not_found
from services.common.errors import FailedPrecondition, NotFound


def session_not_found(account_id: str, session_id: str) -> NotFound:
    return NotFound(
        f"account {account_id} has no live session {session_id!r}",
        reason="SESSION_NOT_FOUND",
        metadata={"account_id": account_id, "session_id": session_id},
    )


class Sessions(HandlersBase):
    """Reading, listing and releasing credit-control sessions."""

    async def get_session(self, account_id: str, session_id: str) -> SessionView:
        view = await self._require_account(account_id)  # rebuilt first if Redis lost it
        found = await self.store.read_sessions(account_id, [session_id])
        if session_id not in found:
            raise session_not_found(account_id, session_id)
        return self._session_view(view, session_id, found[session_id])

    async def list_open_sessions(
        self, account_id: str, after: str, limit: int
    ) -> tuple[list[SessionView], str | None]:
        """Open sessions with ids after ``after``, at most ``limit``, and the id to go on
        from (None: the last page). A page may hold fewer: sessions SQL still has open
        that the supervision released are left out."""
        since = self.clock.now() - timedelta(seconds=self.loader.lookback_seconds)

        def candidates() -> list[str]:
            with self._uow() as uow:
                if uow.accounts.get(account_id) is None:
                    raise account_not_found(account_id)
                return uow.ledger.open_sessions(account_id, since, after, limit + 1)

        ids = await asyncio.to_thread(candidates)
        more = len(ids) > limit
        ids = ids[:limit]
        view = await self._require_account(account_id)
        found = await self.store.read_sessions(account_id, ids)
        views = [
            self._session_view(view, sid, found[sid])
            for sid in ids
            if sid in found and found[sid].get("st") == SessionState.OPEN.value
        ]
        return views, (ids[-1] if more and ids else None)

    async def release_session(self, command: ReleaseSession) -> SessionView:
        digest = fingerprint(command)
        payload: dict[str, Any] = {
            "sid": command.session_id,
            "rid": command.request_id,
            "fp": digest,
            "why": command.reason,
            "now": to_ms(self.clock.now()),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
        }
        account_id, session_id = command.account_id, command.session_id
        result = await self._run(
            account_id,
            lambda: self.store.release(account_id, session_id, command.request_id, payload),
        )
        if result.status == "NOSESSION":
            raise session_not_found(account_id, session_id)
        if result.status == "NOTOPEN":
            state = str(result.answer.get("st", ""))
            raise FailedPrecondition(
                f"session {session_id!r} of account {account_id} is not open "
                f"({'released' if state == 'X' else 'closed'}): nothing to release",
                reason="SESSION_NOT_OPEN",
                metadata={"account_id": account_id, "session_id": session_id},
            )
        self._check_replay(result, digest)
        await self._durable(account_id, result)
        self._known.pop((account_id, session_id), None)
        view = await self._require_account(account_id)
        found = await self.store.read_sessions(account_id, [session_id])
        if session_id in found:
            return self._session_view(view, session_id, found[session_id])
        # A replay after the session was forgotten: what the first answer said.
        return SessionView(
            account_id,
            session_id,
            SessionState.SWEPT,
            int(result.answer.get("rn", 0)),
            None,
            None,
            None,
            (),
        )

    def _session_view(
        self, account: AccountView, session_id: str, fields: dict[str, str]
    ) -> SessionView:
        account_id, currency = account.account_id, account.fields.get("cur", "")
        state = SessionState(fields.get("st", "O"))
        answer: dict[str, Any] = json.loads(fields["ans"]) if fields.get("ans") else {}
        answered_ms = int(answer["now"]) if answer.get("now") else None
        kind = fields.get("t")
        by_group = {int(raw["g"]): raw for raw in answer.get("rgs", ())}
        groups: set[int] = set(by_group)
        for name in fields:
            if name.startswith(("g:", "u:")):
                groups.add(int(name[2:]))
        views = []
        for group in sorted(groups):
            held = json.loads(fields[f"g:{group}"]) if f"g:{group}" in fields else None
            unit = self._group_unit(group, held, currency)
            used = int(fields.get(f"u:{group}", "0"))
            granted_units = int(by_group.get(group, {}).get("gu", "0"))
            holding = state is SessionState.OPEN and held is not None
            granted = (
                Quantity(unit, granted_units) if holding and unit and granted_units > 0 else None
            )
            valid_until = None
            if granted is not None and answered_ms is not None:
                service = self.catalog.get(group)
                seconds = self._validity(service) if service else self.options.validity_seconds
                valid_until = from_ms(answered_ms + seconds * 1000)
            views.append(
                SessionGroupView(
                    group, granted, Quantity(unit, used) if unit and used else None, valid_until
                )
            )
        release_ms = answer.get("sw") if state is SessionState.OPEN else None
        return SessionView(
            account_id,
            session_id,
            state,
            int(fields.get("rn", "0")),
            RequestType(kind) if kind in ("I", "U", "T") else None,
            from_ms(answered_ms) if answered_ms is not None else None,
            from_ms(int(release_ms)) if release_ms else None,
            tuple(views),
        )

    def _group_unit(self, group: int, held: dict[str, Any] | None, currency: str) -> Unit | None:
        service = self.catalog.get(group)
        if service is None:
            return None
        if service.unit_kind is UnitKind.MONEY:
            # Money services hold money of the request's currency (the account's, mostly).
            return money_unit(str((held or {}).get("cur") or currency))
        return service.unit()
