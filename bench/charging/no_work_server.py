"""A ChargingService that answers CreditControl without doing anything, in a process of its own.

The kit's bootstrap (``create_server``: the same interceptors, health and reflection
as the real server, telemetry off) and charging's own request and answer messages,
but no conversion, no Redis, no SQL: what gRPC and the kit cost per Update with
charging's messages, as ``bench.common.echo_server`` is that cost with echo's.
The benchmark reports it beside echo and the real server, so the share of the
server's CPU that charging's own code can still win back is on the same page.
Announces ``{"port": N, "pid": P}`` when ready; serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from google.type import money_pb2

from bench.common.processes import announce
from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.common.grpc_server import ServiceBinding, create_server, serve
from services.common.telemetry import setup_telemetry


class NoWorkCharging(charging_pb2_grpc.ChargingServiceServicer):
    """Answers every CreditControl with a full grant of 60 s, as an Update's answer looks."""

    async def CreditControl(
        self, request: pb.CreditControlRequest, context: Any
    ) -> pb.CreditControlResponse:
        return pb.CreditControlResponse(
            session_id=request.session_id,
            request_number=request.request_number,
            request_type=request.request_type,
            result_code=pb.RESULT_CODE_SUCCESS,
            diameter_result_code=2001,
            multiple_services=[
                pb.MultipleServicesCreditControlAnswer(
                    rating_group=group.rating_group,
                    result_code=pb.RESULT_CODE_SUCCESS,
                    diameter_result_code=2001,
                    validity_time_seconds=300,
                    granted_units=group.requested_units,
                    cost=money_pb2.Money(currency_code="EUR", units=0, nanos=100_000_000)
                    if group.HasField("used_units")
                    else None,
                )
                for group in request.multiple_services
            ],
        )


async def _serve() -> None:
    telemetry = setup_telemetry("charging")
    running = await create_server(
        service_name="charging",
        listen="127.0.0.1:0",
        service_token=os.environ["RECKON_SERVICE_TOKEN"],
        bindings=[
            ServiceBinding(
                "reckon.charging.v1.ChargingService",
                charging_pb2_grpc.add_ChargingServiceServicer_to_server,
                NoWorkCharging(),  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
            )
        ],
    )
    announce(port=running.port, pid=os.getpid())
    await serve(running, grace=1.0, on_stop=[lambda: _shutdown(telemetry)])
    announce(stopped=True)


async def _shutdown(telemetry: Any) -> None:
    telemetry.shutdown()


if __name__ == "__main__":
    asyncio.run(_serve())
