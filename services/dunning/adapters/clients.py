"""Blocking gRPC clients of the services dunning acts on, and the collections export file.

The effects dispatcher runs in a worker thread, so these clients are synchronous
(``open_sync_channel``: service token and trace context on every call). A failed
call is turned into the kit's ``ReckonError`` carrying the other service's reason
(e.g. ``INVALID_STATE_TRANSITION``), so the dispatcher decides on reasons, not on
gRPC codes.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import grpc

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
from services.common.errors import ReckonError, Unavailable
from services.common.grpc_client import open_sync_channel
from services.common.grpc_errors import details_of
from services.common.money import Money
from services.common.proto_convert import money_to_proto
from services.dunning.service_layer.unit_of_work import ReactionRecord

TIMEOUT_SECONDS = 5.0


def _call(method: Callable[..., Any], request: Any) -> Any:
    try:
        return method(request, timeout=TIMEOUT_SECONDS)
    except grpc.RpcError as exc:
        details = details_of(exc)
        if details.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise Unavailable(details.message or "peer unavailable") from exc
        raise ReckonError(details.message, reason=details.reason or details.code.name) from exc


class GrpcAccounts:
    """Suspend, bar and restore accounts through the accounts service."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = open_sync_channel(address, token)
        self._stub = accounts_pb2_grpc.AccountsServiceStub(self._channel)

    def suspend(self, account_id: str, reason: str, request_id: str) -> None:
        _call(
            self._stub.SuspendAccount,
            accounts_pb2.SuspendAccountRequest(
                account_id=account_id, reason=reason, request_id=request_id
            ),
        )

    def bar(self, account_id: str, reason: str, request_id: str) -> None:
        _call(
            self._stub.BarAccount,
            accounts_pb2.BarAccountRequest(
                account_id=account_id, reason=reason, request_id=request_id
            ),
        )

    def restore(self, account_id: str, reason: str, request_id: str) -> None:
        _call(
            self._stub.RestoreAccount,
            accounts_pb2.RestoreAccountRequest(
                account_id=account_id, reason=reason, request_id=request_id
            ),
        )

    def close(self) -> None:
        self._channel.close()


class GrpcInvoicing:
    """Late fees and penalty interest as pending items of the account's next invoice."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = open_sync_channel(address, token)
        self._stub = invoicing_pb2_grpc.InvoicingServiceStub(self._channel)

    def add_pending_item(
        self,
        account_id: str,
        *,
        description: str,
        amount: Money,
        late_fee: bool,
        reference_invoice_id: str,
        request_id: str,
    ) -> None:
        kind = (
            invoicing_pb2.LINE_KIND_LATE_FEE if late_fee else invoicing_pb2.LINE_KIND_PENDING_ITEM
        )
        _call(
            self._stub.AddPendingItem,
            invoicing_pb2.AddPendingItemRequest(
                account_id=account_id,
                description=description,
                amount=money_to_proto(amount),
                kind=kind,
                service="dunning",
                reference_invoice_id=reference_invoice_id,
                request_id=request_id,
            ),
        )

    def record_dunning_level(self, invoice_id: str, level: int, request_id: str) -> None:
        _call(
            self._stub.RecordDunningLevel,
            invoicing_pb2.RecordDunningLevelRequest(
                invoice_id=invoice_id, level=level, request_id=request_id
            ),
        )

    def close(self) -> None:
        self._channel.close()


EXPORT_COLUMNS = (
    "account_id",
    "customer_id",
    "episode_id",
    "level",
    "amount_overdue",
    "currency",
    "handed_over_on",
    "reaction_key",
)


def _amount(record: ReactionRecord) -> str:
    """The amount with the currency's decimals (SQL may give 120 for 120.00)."""
    if record.amount is None:
        return ""
    return str(Money.of(record.amount, record.currency).rounded().amount)


class CsvCollectionsExport:
    """``<directory>/collections-YYYY-MM-DD.csv``: every account handed over that day.

    The file is rewritten whole from the database (to a temporary name, then renamed),
    so a rewrite after a crash or a second hand-over the same day never duplicates a row.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def path_for(self, run_date: date) -> Path:
        return self._directory / f"collections-{run_date.isoformat()}.csv"

    def write(self, run_date: date, handed_over: Sequence[ReactionRecord]) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(run_date)
        partial = target.with_suffix(".csv.partial")
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(EXPORT_COLUMNS)
            for record in handed_over:
                writer.writerow(
                    [
                        record.account_id,
                        record.customer_id,
                        record.episode_id,
                        record.level,
                        _amount(record),
                        record.currency,
                        record.run_date.isoformat(),
                        record.key,
                    ]
                )
        os.replace(partial, target)
