"""The balance rules of one account: reserve, debit, release, credit (CHG-3, CHG-5..7).

``Wallet`` is the executable specification of what the Lua scripts do atomically
in Redis (``adapters/lua/_lib.lua``, ``credit_control.lua``, ``event.lua``); a
differential test runs both on random accounts and requests. All amounts are
integers in the unit's scale (``units``).

Rules:

- *Headroom* of a bucket is what may still be taken: ``available - floor``, where
  the floor is 0, except on the main money bucket of the account's currency of a
  postpaid or hybrid account, where it is minus the credit limit (the credit line).
- *Reserve* (INITIAL, UPDATE): a rating group is served from the unit buckets of
  its service's unit while any has headroom (free units before money), partially
  if they hold less than wanted; otherwise, for a rated service, money at the
  price rating quoted for the wanted units, partially if the money is short (the
  caller then asks rating how many units the held money buys). A service priced
  at zero, or free, is granted without holding anything. The grant is *final*
  (final-unit indication) when nothing is left to draw after it.
- *Settle* (UPDATE, TERMINATE): used units are debited from the reservation's
  own allocations, in order; the rest of the reservation is released. Usage
  beyond the reservation (or without one: a swept or released session) is debited
  from the same class of buckets by headroom and then *forced* onto the last
  bucket drawn, below its floor if need be: usage that happened is never lost.
- Direct debit and balance check are all or nothing per rating group; a refund
  credits the first unit bucket, else the main money bucket at the quoted price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.charging.domain.accounts import AccountPolicy, AccountState, BillingMode, admission
from services.charging.domain.buckets import Bucket, draw_order
from services.charging.domain.instants import to_ms
from services.charging.domain.ledger import Direction, EntryKind
from services.charging.domain.thresholds import credit_levels_crossed, low_balance_crossed
from services.charging.domain.units import MAX_BALANCE, Unit, money_unit


@dataclass
class Amounts:
    available: int = 0
    reserved: int = 0


@dataclass
class Reservation:
    """One rating group's hold: units or money, allocated over buckets in draw order."""

    kind: str  # "u" units, "m" money, "f" free (nothing held)
    allocations: list[tuple[str, int]] = field(default_factory=list)
    currency: str = ""

    @property
    def held(self) -> int:
        return sum(amount for _, amount in self.allocations)


@dataclass(frozen=True, slots=True)
class RatingGroupCharge:
    """A rating group of a request as the balance rules see it (prices already quoted)."""

    rating_group: int
    service: str
    unit: Unit
    free: bool = False
    wanted: int = 0
    price_of_wanted: int | None = None  # None: not priced
    price_currency: str = ""
    used: int = 0
    cost_of_used: int | None = None
    rating_failed: bool = False
    # What the unit after a money grant costs, and the first money unit after unit buckets:
    # a grant after which less than that is left is the final one (RFC 4006).
    price_of_next: int = 0
    price_of_first: int = 0


@dataclass(frozen=True, slots=True)
class Movement:
    bucket_id: str
    unit: Unit
    direction: Direction
    amount: int
    rating_group: int
    kind: EntryKind


@dataclass
class Grant:
    result: str  # OK | DENIED | NOCREDIT | RATING
    kind: str = ""
    granted: int = 0  # -1: money held partially; the caller converts `held` to units
    held: int = 0
    final: bool = False


@dataclass
class Settlement:
    charged_units: int = 0
    charged_money: int = 0
    currency: str = ""
    uncharged: int = 0


class Wallet:
    """An account's buckets and amounts with the balance rules; mutates in place."""

    def __init__(
        self,
        policy: AccountPolicy,
        buckets: list[Bucket],
        amounts: dict[str, Amounts] | None = None,
        state: AccountState = AccountState.ACTIVE,
    ) -> None:
        self.policy = policy
        self.state = state
        self.buckets = {b.bucket_id: b for b in buckets}
        self.amounts = amounts if amounts is not None else {}
        for bucket_id in self.buckets:
            self.amounts.setdefault(bucket_id, Amounts())
        self._moves: dict[tuple[str, Direction, int, EntryKind], int] = {}
        self._order: list[tuple[str, Direction, int, EntryKind]] = []

    # -- queries ---------------------------------------------------------------------
    def floor(self, bucket: Bucket) -> int:
        if bucket.main and bucket.unit == money_unit(self.policy.currency):
            return self.policy.credit_floor
        return 0

    def headroom(self, bucket: Bucket) -> int:
        return max(0, self.amounts[bucket.bucket_id].available - self.floor(bucket))

    def draw(self, unit: Unit, service: str, rating_group: int, at: datetime) -> list[Bucket]:
        return draw_order(
            self.buckets.values(),
            unit,
            service=service,
            rating_group=rating_group,
            at=at,
            mode=self.policy.mode,
        )

    def total_headroom(self, buckets: list[Bucket]) -> int:
        return sum(self.headroom(b) for b in buckets)

    def money_total(self) -> int:
        unit = money_unit(self.policy.currency)
        return sum(
            a.available + a.reserved
            for bucket_id, a in self.amounts.items()
            if self.buckets[bucket_id].unit == unit
        )

    def allowed(self, free: bool) -> bool:
        return admission(self.state, free_service=free) is None

    # -- movements (future ledger entries) -----------------------------------------------
    def _move(
        self, bucket: Bucket, direction: Direction, amount: int, rg: int, kind: EntryKind
    ) -> None:
        if amount <= 0:
            return
        key = (bucket.bucket_id, direction, rg, kind)
        if key not in self._moves:
            self._order.append(key)
            self._moves[key] = 0
        self._moves[key] += amount

    def take_movements(self) -> list[Movement]:
        moves = [
            Movement(key[0], self.buckets[key[0]].unit, key[1], self._moves[key], key[2], key[3])
            for key in self._order
        ]
        self._moves.clear()
        self._order.clear()
        return moves

    # -- primitives ----------------------------------------------------------------------
    def hold(self, buckets: list[Bucket], want: int) -> tuple[int, list[tuple[str, int]]]:
        left, allocations = want, []
        for bucket in buckets:
            if left <= 0:
                break
            headroom = self.headroom(bucket)
            if headroom > 0:
                taken = min(headroom, left)
                amounts = self.amounts[bucket.bucket_id]
                amounts.available -= taken
                amounts.reserved += taken
                allocations.append((bucket.bucket_id, taken))
                left -= taken
        return want - left, allocations

    def consume(
        self, allocations: list[tuple[str, int]], need: int, rg: int, kind: EntryKind
    ) -> int:
        """Debit ``need`` from the allocations in order, release the rest; returns the shortfall."""
        for bucket_id, held in allocations:
            if bucket_id not in self.buckets or held <= 0:
                continue
            amounts = self.amounts[bucket_id]
            taken = min(held, need)
            if taken > 0:
                amounts.reserved -= taken
                self._move(self.buckets[bucket_id], Direction.DEBIT, taken, rg, kind)
                need -= taken
            rest = held - taken
            if rest > 0:
                amounts.reserved -= rest
                amounts.available += rest
        return need

    def charge(
        self,
        buckets: list[Bucket],
        need: int,
        rg: int,
        kind: EntryKind,
        *,
        force: bool,
        force_on: Bucket | None = None,
    ) -> int:
        """Debit by headroom in order; forced usage goes onto ``force_on`` or the last bucket."""
        for bucket in buckets:
            if need <= 0:
                break
            headroom = self.headroom(bucket)
            if headroom > 0:
                taken = min(headroom, need)
                self.amounts[bucket.bucket_id].available -= taken
                self._move(bucket, Direction.DEBIT, taken, rg, kind)
                need -= taken
        if need > 0 and force:
            target = force_on or (buckets[-1] if buckets else None)
            if target is not None:
                amounts = self.amounts[target.bucket_id]
                taken = min(need, amounts.available + MAX_BALANCE)
                if taken > 0:
                    amounts.available -= taken
                    self._move(target, Direction.DEBIT, taken, rg, kind)
                    need -= taken
        return need

    def credit(self, bucket: Bucket, amount: int, rg: int, kind: EntryKind) -> bool:
        amounts = self.amounts[bucket.bucket_id]
        if amounts.available + amounts.reserved + amount > MAX_BALANCE:
            return False
        amounts.available += amount
        self._move(bucket, Direction.CREDIT, amount, rg, kind)
        return True

    # -- the rules of a credit-control rating group --------------------------------------
    def _money_list(self, charge: RatingGroupCharge, at: datetime) -> list[Bucket]:
        if not charge.price_currency:
            return []
        return self.draw(money_unit(charge.price_currency), charge.service, charge.rating_group, at)

    def reserve(self, charge: RatingGroupCharge, at: datetime) -> tuple[Reservation | None, Grant]:
        if charge.wanted <= 0:
            return None, Grant("OK")
        if charge.free:
            return Reservation("f"), Grant("OK", "f", charge.wanted)
        units = self.draw(charge.unit, charge.service, charge.rating_group, at)
        price = charge.price_of_wanted
        money = self._money_list(charge, at) if price is not None and price > 0 else []
        if self.total_headroom(units) > 0:
            taken, allocations = self.hold(units, charge.wanted)
            final = self.total_headroom(units) == 0 and self.total_headroom(money) < max(
                charge.price_of_first, 1
            )
            return Reservation("u", allocations), Grant("OK", "u", taken, taken, final)
        if price == 0:
            return Reservation("f"), Grant("OK", "f", charge.wanted)
        if price is not None and price > 0:
            taken, allocations = self.hold(money, price)
            if taken == 0:
                return None, Grant("NOCREDIT")
            reservation = Reservation("m", allocations, charge.price_currency)
            if taken < price:
                return reservation, Grant("OK", "m", -1, taken, True)
            final = self.total_headroom(money) < max(charge.price_of_next, 1)
            return reservation, Grant("OK", "m", charge.wanted, taken, final)
        return None, Grant("RATING" if charge.rating_failed else "NOCREDIT")

    def settle(
        self, charge: RatingGroupCharge, reservation: Reservation | None, at: datetime
    ) -> Settlement:
        used = max(0, charge.used)
        kind = EntryKind.USAGE
        rg = charge.rating_group
        result = Settlement(currency=charge.price_currency)
        if reservation is not None and reservation.kind == "m":
            result.currency = reservation.currency
        if charge.free or (reservation is not None and reservation.kind == "f"):
            if reservation is not None:
                self.consume(reservation.allocations, 0, rg, kind)
            return result
        units = self.draw(charge.unit, charge.service, rg, at)
        cost = charge.cost_of_used
        if reservation is not None and reservation.kind == "u":
            need = self.consume(reservation.allocations, used, rg, kind)
            force_on = self._last(reservation)
            result.uncharged = self.charge(units, need, rg, kind, force=True, force_on=force_on)
            result.charged_units = used - result.uncharged
        elif reservation is not None and reservation.kind == "m" and (cost is not None or not used):
            price = max(cost or 0, 0)
            need = self.consume(reservation.allocations, price, rg, kind)
            money = self.draw(money_unit(reservation.currency), charge.service, rg, at)
            force_on = self._last(reservation)
            result.uncharged = self.charge(money, need, rg, kind, force=True, force_on=force_on)
            result.charged_money = price - result.uncharged
        else:
            if reservation is not None:
                self.consume(reservation.allocations, 0, rg, kind)
            if used > 0:
                if self.total_headroom(units) > 0 or cost is None:
                    result.uncharged = self.charge(units, used, rg, kind, force=True)
                    result.charged_units = used - result.uncharged
                else:
                    money = self._money_list(charge, at)
                    result.uncharged = self.charge(money, cost, rg, kind, force=True)
                    result.charged_money = cost - result.uncharged
                    result.currency = charge.price_currency
        return result

    def release(self, reservation: Reservation) -> None:
        self.consume(reservation.allocations, 0, 0, EntryKind.USAGE)

    def _last(self, reservation: Reservation) -> Bucket | None:
        if not reservation.allocations:
            return None
        return self.buckets.get(reservation.allocations[-1][0])

    # -- one-shot events (RFC 4006 section 6) ---------------------------------------------
    def direct_debit(self, charge: RatingGroupCharge, at: datetime, *, apply: bool = True) -> Grant:
        """All or nothing; ``apply=False`` is the balance check."""
        if not self.allowed(charge.free):
            return Grant("DENIED")
        units = self.draw(charge.unit, charge.service, charge.rating_group, at)
        money = self._money_list(charge, at)
        unit_room = self.total_headroom(units)
        price = charge.price_of_wanted
        rg, kind = charge.rating_group, EntryKind.DIRECT_DEBIT
        if charge.free or (price == 0 and unit_room < charge.wanted):
            return Grant("OK", "f", charge.wanted)
        if unit_room >= charge.wanted:
            if apply:
                self.charge(units, charge.wanted, rg, kind, force=False)
            return Grant("OK", "u", charge.wanted)
        if price is not None and price > 0 and self.total_headroom(money) >= price:
            if apply:
                self.charge(money, price, rg, kind, force=False)
            return Grant("OK", "m", charge.wanted)
        if price is None and charge.rating_failed and unit_room == 0:
            return Grant("RATING")
        return Grant("NOCREDIT")

    def refund(self, charge: RatingGroupCharge, at: datetime) -> Grant:
        units = self.draw(charge.unit, charge.service, charge.rating_group, at)
        rg, kind = charge.rating_group, EntryKind.REFUND
        if units:
            if self.credit(units[0], charge.wanted, rg, kind):
                return Grant("OK", "u", charge.wanted)
            return Grant("TOOBIG")
        price = charge.price_of_wanted
        if price is not None and price >= 0 and charge.price_currency:
            target = self.buckets.get(f"main-{charge.price_currency}")
            if target is None or target.unit != money_unit(charge.price_currency):
                money = self._money_list(charge, at)
                target = money[0] if money else None
            if target is None:
                return Grant("NOBUCKET")
            if self.credit(target, price, rg, kind):
                return Grant("OK", "m", charge.wanted)
            return Grant("TOOBIG")
        return Grant("RATING")

    # -- thresholds --------------------------------------------------------------------------
    def crossed(self, before: int, after: int) -> list[tuple[str, int]]:
        """Threshold events of a change from ``before`` to ``after`` (committed money)."""
        events: list[tuple[str, int]] = []
        if low_balance_crossed(before, after, self.policy.low_balance):
            events.append(("BalanceLow", 0))
        if self.policy.mode is not BillingMode.PREPAID:
            for level in credit_levels_crossed(before, after, self.policy.credit_limit):
                events.append(("CreditLimitReached", level))
        return events


def bucket_meta(bucket: Bucket) -> dict[str, object]:
    """The JSON metadata of a bucket as the Lua scripts read it (``_lib.lua``)."""
    return {
        "u": bucket.unit.key,
        "p": bucket.priority,
        "f": to_ms(bucket.valid_from) if bucket.valid_from else 0,
        "t": to_ms(bucket.valid_until) if bucket.valid_until else 0,
        "sv": sorted(bucket.services),
        "rg": sorted(bucket.rating_groups),
        "main": 1 if bucket.main else 0,
        "o": to_ms(bucket.created_at) if bucket.created_at else 0,
        "label": bucket.label,
        "v": bucket.version,
    }
