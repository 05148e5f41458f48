"""Rating RPCs: rate one event, a batch or a stream (RateEvent, RateEvents,
StreamRateEvents), quote a price and find what an amount buys (Quote, UnitsForAmount).
Per-event failures are answered in the event's result with an error status, not as a
failed call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from functools import partial
from typing import Any

from reckon.rating.v1 import rating_pb2
from services.common.errors import FailedPrecondition, InvalidArgument, Violations
from services.common.grpc_errors import status_proto
from services.common.proto_convert import money_from_proto
from services.rating.entrypoints import converters as convert
from services.rating.entrypoints.rpc_common import DOMAIN, MAX_QUOTE_UNITS, RpcBase
from services.rating.service_layer.questions import (
    PricedUsage,
    PricingFailure,
    rate_event,
    rate_events,
    units_for_amount,
)


class RatingRpcs(RpcBase):
    """RateEvent, RateEvents, StreamRateEvents, Quote and UnitsForAmount; mixed into
    ``RatingServicer``."""

    # -- rating ----------------------------------------------------------------------

    def _priced(self, priced: PricedUsage, start: Any) -> rating_pb2.Charge:
        return convert.charge_to_proto(priced.explained, start)

    async def RateEvent(
        self, request: rating_pb2.RateEventRequest, context: Any
    ) -> rating_pb2.RateEventResponse:
        violations = Violations()
        usage = None
        if not request.HasField("event"):
            violations.add("event", "is required")
        else:
            with violations.nested("event") as nested:
                usage = convert.usage_from_proto(request.event, nested, now=self._app.clock.now())
        violations.raise_if_any()
        assert usage is not None
        app = self._app
        priced = await self._run(lambda: rate_event(app.uow_factory, app.tariffs, usage))
        return rating_pb2.RateEventResponse(charge=self._priced(priced, usage.event_time))

    async def RateEvents(
        self, request: rating_pb2.RateEventsRequest, context: Any
    ) -> rating_pb2.RateEventsResponse:
        violations = Violations()
        if len(request.events) > convert.MAX_BATCH:
            violations.add("events", f"at most {convert.MAX_BATCH} events per batch")
            violations.raise_if_any()
        now = self._app.clock.now()
        batch = []
        for index, event in enumerate(request.events):
            with violations.nested(f"events[{index}]") as nested:
                batch.append(convert.usage_from_proto(event, nested, now=now))
        violations.raise_if_any()
        usages = [u for u in batch if u is not None]
        app = self._app
        results = await self._run(lambda: rate_events(app.uow_factory, app.tariffs, usages))
        return rating_pb2.RateEventsResponse(
            results=[
                self._result(index, usage.record_id, usage.event_time, outcome)
                for index, (usage, outcome) in enumerate(zip(usages, results, strict=True))
            ]
        )

    def _result(
        self, index: int, record_id: str, start: Any, outcome: PricedUsage | PricingFailure
    ) -> rating_pb2.RateEventResult:
        if isinstance(outcome, PricingFailure):
            error = outcome.error or FailedPrecondition(outcome.message, reason=outcome.reason)
            return rating_pb2.RateEventResult(
                index=index,
                record_id=record_id,
                error=rating_pb2.RatingError(
                    reason=outcome.reason, message=outcome.message, field=outcome.field
                ),
                status=status_proto(error, domain=DOMAIN),
            )
        return rating_pb2.RateEventResult(
            index=index, record_id=record_id, charge=self._priced(outcome, start)
        )

    async def StreamRateEvents(
        self, request_iterator: AsyncIterator[rating_pb2.StreamRateEventsRequest], context: Any
    ) -> AsyncIterator[rating_pb2.StreamRateEventsResponse]:
        # Events are priced in small groups (what has arrived), answered in order: one
        # thread hop and one account lookup per group instead of per event.
        app = self._app
        index = 0
        queue: asyncio.Queue[rating_pb2.StreamRateEventsRequest | None] = asyncio.Queue(256)

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    await queue.put(request)
            finally:
                await queue.put(None)

        reader = asyncio.ensure_future(pump())
        try:
            finished = False
            while not finished:
                first = await queue.get()
                if first is None:
                    break
                group = [first]
                while not queue.empty() and len(group) < 500:
                    following = queue.get_nowait()
                    if following is None:
                        finished = True
                        break
                    group.append(following)
                now = app.clock.now()
                answers: list[rating_pb2.RateEventResult | None] = []
                usages = []
                for request in group:
                    violations = Violations()
                    with violations.nested("event") as nested:
                        usage = convert.usage_from_proto(request.event, nested, now=now)
                    if usage is None:
                        first_problem = violations.items[0]
                        answers.append(
                            rating_pb2.RateEventResult(
                                index=index,
                                record_id=request.event.record_id,
                                error=rating_pb2.RatingError(
                                    reason="INVALID_ARGUMENT",
                                    message=first_problem.description,
                                    field=first_problem.field,
                                ),
                                status=status_proto(
                                    InvalidArgument(list(violations.items)), domain=DOMAIN
                                ),
                            )
                        )
                    else:
                        answers.append(None)
                        usages.append((index, usage))
                    index += 1
                batch = [usage for _, usage in usages]
                priced = (
                    await self._run(partial(rate_events, app.uow_factory, app.tariffs, batch))
                    if batch
                    else []
                )
                priced_iter = iter(zip(usages, priced, strict=True))
                for answer in answers:
                    if answer is None:
                        (position, usage), outcome = next(priced_iter)
                        answer = self._result(position, usage.record_id, usage.event_time, outcome)
                    yield rating_pb2.StreamRateEventsResponse(result=answer)
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader

    async def Quote(
        self, request: rating_pb2.QuoteRequest, context: Any
    ) -> rating_pb2.QuoteResponse:
        violations = Violations()
        units, unit = 0, ""
        if not request.HasField("quantity"):
            violations.add("quantity", "is required")
        else:
            units = request.quantity.value
            if not 0 <= units <= MAX_QUOTE_UNITS:
                violations.add(
                    "quantity.value", f"is out of range: must be 0 to {MAX_QUOTE_UNITS} (10^15)"
                )
            unit = convert.UNIT_NAMES.get(request.quantity.unit, "")
        usage = convert.quote_usage(
            request, violations, now=self._app.clock.now(), quantity_value=units, unit=unit
        )
        violations.raise_if_any()
        app = self._app
        priced = await self._run(lambda: rate_event(app.uow_factory, app.tariffs, usage))
        return rating_pb2.QuoteResponse(charge=self._priced(priced, usage.event_time))

    async def UnitsForAmount(
        self, request: rating_pb2.UnitsForAmountRequest, context: Any
    ) -> rating_pb2.UnitsForAmountResponse:
        violations = Violations()
        money = None
        if not request.HasField("amount"):
            violations.add("amount", "is required")
        else:
            money = money_from_proto(request.amount, "amount", violations)
        # Search up to a month of seconds or 10^12 units: far beyond any real balance.
        usage = convert.quote_usage(
            request, violations, now=self._app.clock.now(), quantity_value=0, unit=""
        )
        violations.raise_if_any()
        assert money is not None
        app = self._app

        def work() -> tuple[int, PricedUsage]:
            tariff = app.tariffs.current()
            product = tariff.units.get(usage.service)
            usage.quantity = (
                31 * 86_400 if product is not None and product.value == "second" else 10**12
            )
            return units_for_amount(
                app.uow_factory, app.tariffs, usage, money.amount, money.currency
            )

        units, priced = await self._run(work)
        return rating_pb2.UnitsForAmountResponse(
            quantity=convert.quantity(units, priced.unit),
            charge=self._priced(priced, usage.event_time),
        )
