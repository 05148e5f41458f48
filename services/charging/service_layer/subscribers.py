"""Which account a subscriber's service identifier names (issue 9 item 12, ADR 0058).

Credit-control requests may name the subscriber as the network does (Diameter Gy's
Subscription-Id: an E.164 number, a SIP URI, a conference PIN, a bridge account
code, or ``ext:<external_ref>``) rather than by account id. Charging learns those
names from accounts' events (``SubscriptionChanged.service_ids``,
``AccountCreated/Updated.external_ref``) into ``subscriber_aliases`` and keeps an
in-process cache in front of it, so the hot path reads SQL only on a name it has
not seen recently:

- the worker that consumes an event updates its cache at once (``learn``);
- other workers (``CHARGING_WORKERS`` > 1) re-read a cached name after
  ``ttl_seconds``, a name nobody held after ``miss_seconds``: a number moved to
  another account is followed everywhere within ``ttl_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.errors import NotFound

# The Diameter result code RFC 4006 gives an unknown subscriber (DIAMETER_USER_UNKNOWN),
# carried in the error's metadata for Diameter front ends.
DIAMETER_USER_UNKNOWN = 5030


def subscriber_not_found(name: str) -> NotFound:
    return NotFound(
        f"no account is known to charging by {name!r}",
        reason="SUBSCRIBER_NOT_FOUND",
        metadata={"subscription_id": name, "diameter_result_code": str(DIAMETER_USER_UNKNOWN)},
        resource_type="subscriber",
        resource_name=name,
    )


class SubscriberDirectory:
    """The names of accounts, in SQL, with a bounded in-process cache in front."""

    def __init__(
        self,
        uow_factory: Callable[[], ChargingUnitOfWork],
        *,
        ttl_seconds: float = 30.0,
        miss_seconds: float = 2.0,
        max_entries: int = 200_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow_factory = uow_factory
        self._ttl = ttl_seconds
        self._miss_ttl = miss_seconds
        self._max = max_entries
        self._now = monotonic
        # name -> (account id or None when nobody holds it, when to read it again)
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._reading: dict[tuple[str, ...], asyncio.Future[dict[str, str]]] = {}
        self._learnt = 0  # events learnt by this worker so far

    async def account_for(self, keys: Sequence[str]) -> str:
        """The account the first of ``keys`` (most specific first) that names one names;
        ``NotFound`` (SUBSCRIBER_NOT_FOUND) when none does."""
        now = self._now()
        for key in keys:
            hit = self._cache.get(key)
            if hit is None or hit[1] <= now:
                break  # not known here (or too long ago): ask SQL
            if hit[0] is not None:
                return hit[0]
        else:
            raise subscriber_not_found(keys[0] if keys else "")
        learnt = self._learnt
        owners = await self._read_once(tuple(keys))
        if learnt == self._learnt:  # else an event landed meanwhile: its answer stays cached
            self._remember({key: owners.get(key) for key in keys}, now, learnt=False)
        for key in keys:
            if key in owners:
                return owners[key]
        raise subscriber_not_found(keys[0] if keys else "")

    async def _read_once(self, keys: tuple[str, ...]) -> dict[str, str]:
        """One SQL read per name at a time: a batch of a thousand requests for the same
        number, on a cold cache, waits for one read rather than queueing a thousand."""
        reading = self._reading.get(keys)
        if reading is None:
            reading = asyncio.ensure_future(asyncio.to_thread(self._read, keys))
            self._reading[keys] = reading
            reading.add_done_callback(lambda _: self._reading.pop(keys, None))
        # Shielded: a cancelled request does not cancel the read others wait for.
        return await asyncio.shield(reading)

    def _read(self, keys: Sequence[str]) -> dict[str, str]:
        with self._uow_factory() as uow:
            return uow.aliases.owners(keys)

    async def learn(
        self, names: Sequence[str], account_id: str, version: int, now: datetime
    ) -> None:
        """``names`` name ``account_id`` as of ``version`` (the event's time in ms): stored
        unless a newer event gave a name to another account, and cached here at once."""
        if not names:
            return

        def claim() -> dict[str, str]:
            with self._uow_factory() as uow:
                for name in names:
                    uow.aliases.claim(name, account_id, version, now)
                owners = uow.aliases.owners(names)
                uow.commit()
                return owners

        owners = await asyncio.to_thread(claim)
        self._learnt += 1
        self._remember({name: owners.get(name) for name in names}, self._now(), learnt=True)

    def forget(self) -> None:
        """Drop the cache (tests; an operator's bulk change straight in SQL)."""
        self._cache.clear()

    def _remember(self, found: dict[str, str | None], now: float, *, learnt: bool) -> None:
        if len(self._cache) + len(found) > self._max:
            self._cache.clear()  # crude but bounded: the next requests refill it from SQL
        for name, owner in found.items():
            ttl = self._ttl if owner is not None or learnt else self._miss_ttl
            self._cache[name] = (owner, now + ttl)


__all__ = ["DIAMETER_USER_UNKNOWN", "SubscriberDirectory", "subscriber_not_found"]
