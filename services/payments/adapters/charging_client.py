"""Charging's TopUp behind payments' ``ChargingPort`` (``CHARGING_ADDR``).

The payment id is the top-up's request id: whatever is retried, the prepaid
balance is credited once (charging replays the first answer for a known id).
"""

from __future__ import annotations

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.common.grpc_client import open_sync_channel
from services.common.money import Money
from services.common.proto_convert import money_to_proto


class GrpcCharging:
    def __init__(self, address: str, token: str, *, timeout_seconds: float = 5.0) -> None:
        self._channel = open_sync_channel(address, token)
        self._stub = charging_pb2_grpc.ChargingServiceStub(self._channel)
        self._timeout = timeout_seconds

    def close(self) -> None:
        self._channel.close()

    def top_up(self, *, request_id: str, account_id: str, amount: Money) -> None:
        self._stub.TopUp(
            pb.TopUpRequest(
                account_id=account_id,
                amount=pb.Quantity(money=money_to_proto(amount)),
                reference=request_id,
                request_id=request_id,
            ),
            timeout=self._timeout,
        )


class NoCharging:
    """Used when ``CHARGING_ADDR`` is unset: top-ups stay pending until it is configured."""

    def top_up(self, *, request_id: str, account_id: str, amount: Money) -> None:
        raise RuntimeError("CHARGING_ADDR is not set: cannot credit a prepaid balance")
