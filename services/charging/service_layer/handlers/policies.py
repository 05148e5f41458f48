"""Account policies (CHG-6, CHG-8) and the rating-group catalog."""

from __future__ import annotations

import asyncio
import logging

from services.charging.domain.instants import to_ms
from services.charging.domain.services import ServiceDefinition
from services.charging.service_layer.commands import (
    DefineService,
    PolicyView,
    SetPolicy,
    fingerprint,
)
from services.charging.service_layer.handlers.base import (
    HandlersBase,
    policy_of,
    state_of,
)
from services.charging.service_layer.rebuild import account_not_found

log = logging.getLogger(__name__)


class Policies(HandlersBase):
    """Account policies and rating-group definitions."""

    # -- account policy ---------------------------------------------------------------------
    async def set_policy(self, command: SetPolicy) -> PolicyView:
        policy = command.policy
        digest = fingerprint(command)

        def create_if_new() -> str:
            with self._uow() as uow:
                if command.request_id:
                    uow.replayed_resource(
                        self._scope("policy", policy.account_id), command.request_id, digest
                    )
                if uow.accounts.get(policy.account_id) is not None:
                    return "exists"
                now = self.clock.now()
                uow.accounts.add(policy, now)
                uow.remember_request(
                    self._scope("policy", policy.account_id),
                    command.request_id,
                    digest,
                    policy.account_id,
                )
                uow.commit()
                return "created"

        if await asyncio.to_thread(create_if_new) == "created":
            await self.loader.ensure_loaded(policy.account_id, fresh=True)
            return await self.get_policy(policy.account_id)
        t80, _ = policy.credit_thresholds
        payload = {
            "op": "POLICY",
            "acct": policy.account_id,
            "now": to_ms(self.clock.now()),
            "win": self.options.window_seconds,
            "jd": self.options.journal_drain_ms,
            "rid": command.request_id,
            "fp": digest,
            "pol": {
                "mode": policy.mode.value,
                "cur": policy.currency,
                "lim": str(policy.credit_limit),
                "low": "" if policy.low_balance is None else str(policy.low_balance),
                "t80": str(t80),
                "fua": policy.final_unit_action.value,
                "fur": policy.redirect_address,
                "fuf": policy.restriction_filter_id,
            },
        }
        result = await self._run(
            policy.account_id,
            lambda: self.store.account(policy.account_id, command.request_id, payload),
        )
        self._check_replay(result, digest)
        await self._durable(policy.account_id, result)
        return await self.get_policy(policy.account_id)

    async def get_policy(self, account_id: str) -> PolicyView:
        def load() -> PolicyView:
            with self._uow() as uow:
                record = uow.accounts.get(account_id)
            if record is None:
                raise account_not_found(account_id)
            return PolicyView(record.policy, record.state, record.updated_at)

        view = await asyncio.to_thread(load)
        live = await self.store.read_account(account_id)
        if live is None:
            return view
        # The live store is ahead of SQL by at most the journal entries being committed.
        return PolicyView(
            policy_of(account_id, live.fields), state_of(live.fields), view.updated_at
        )

    # -- rating groups ------------------------------------------------------------------------
    async def define_service(self, command: DefineService) -> ServiceDefinition:
        def store() -> None:
            with self._uow() as uow:
                uow.services.put(command.definition, self.clock.now())
                uow.commit()

        await asyncio.to_thread(store)
        self.catalog.put(command.definition)
        return command.definition

    async def list_services(self) -> list[ServiceDefinition]:
        await self.catalog.reload()
        return self.catalog.all()
