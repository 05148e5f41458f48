"""The unit of work contract every service's handlers use (no SQL here).

A unit of work is one transaction: repositories read and change aggregates,
``publish`` queues events that are committed together with the change, and
``commit`` makes all of it durable at once. Leaving the ``with`` block without
``commit`` rolls back. The idempotency and inbox operations live here too, so
a handler can make a retried request or a redelivered event a no-op inside the
same transaction as its effect.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from services.common.errors import InvalidArgument
from services.common.events import DomainEvent


@dataclass(frozen=True)
class RememberedRequest:
    fingerprint: str
    resource_id: str


class UnitOfWork(abc.ABC):
    def __init__(self) -> None:
        self.pending_events: list[DomainEvent] = []

    def __enter__(self) -> Self:
        self.pending_events = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    def publish(self, event: DomainEvent) -> None:
        self.pending_events.append(event)

    def commit(self) -> None:
        self._commit()
        self.pending_events = []

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    # -- idempotency of mutating requests (AIP-155) ---------------------------------
    @abc.abstractmethod
    def find_request(self, scope: str, request_id: str) -> RememberedRequest | None: ...

    @abc.abstractmethod
    def remember_request(
        self, scope: str, request_id: str, fingerprint: str, resource_id: str
    ) -> None: ...

    def replayed_resource(self, scope: str, request_id: str, fingerprint: str) -> str | None:
        """The resource a repeated request produced, or None for a first request.

        Reusing a ``request_id`` for a different request is refused rather than
        silently answered with the first request's result.
        """
        if not request_id:
            return None
        remembered = self.find_request(scope, request_id)
        if remembered is None:
            return None
        if remembered.fingerprint != fingerprint:
            raise InvalidArgument.field("request_id", "was already used for a different request")
        return remembered.resource_id

    # -- inbox of event consumers --------------------------------------------------------
    @abc.abstractmethod
    def mark_processed(self, consumer: str, event_id: str) -> bool:
        """Record the event as handled; False if this consumer already handled it."""

    def mark_processed_many(self, consumer: str, event_ids: Sequence[str]) -> list[str]:
        """``mark_processed`` for a batch: the ids not handled before, each once, in order.

        A consumer planning many events in one transaction asks once; a store that can
        answer set-based (SQL: one SELECT ... IN, one multi-row INSERT) overrides this.
        """
        return [i for i in dict.fromkeys(event_ids) if self.mark_processed(consumer, i)]
