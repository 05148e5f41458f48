"""The unit of work's inbox for a batch: ``mark_processed_many`` as ``mark_processed`` per id."""

from __future__ import annotations

from services.common.unit_of_work import RememberedRequest, UnitOfWork


class _Inbox(UnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.processed: set[tuple[str, str]] = set()

    def _commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def find_request(self, scope: str, request_id: str) -> RememberedRequest | None:
        return None

    def remember_request(
        self, scope: str, request_id: str, fingerprint: str, resource_id: str
    ) -> None:
        pass

    def mark_processed(self, consumer: str, event_id: str) -> bool:
        if (consumer, event_id) in self.processed:
            return False
        self.processed.add((consumer, event_id))
        return True


def test_each_new_event_once_in_order_by_default() -> None:
    inbox = _Inbox()
    assert inbox.mark_processed("c", "e1")
    assert inbox.mark_processed_many("c", ["e2", "e1", "e3", "e2"]) == ["e2", "e3"]
    assert inbox.mark_processed_many("c", []) == []
    assert inbox.mark_processed_many("other", ["e1"]) == ["e1"]
