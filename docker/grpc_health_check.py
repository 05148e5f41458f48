"""Container health check: exit 0 only if the service in this container answers SERVING.

Usage: ``python /app/grpc_health_check.py [HOST:PORT]``. Without an address it
dials the port of the one ``<SERVICE>_LISTEN`` variable the container has (the
same variable the service binds), so every service's compose block can share one
``healthcheck``. Health is exempt from the service token, like any probe.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _address(argv: list[str]) -> str:
    if len(argv) > 1:
        return argv[1]
    listens = sorted(v for k, v in os.environ.items() if k.endswith("_LISTEN"))
    if len(listens) != 1:
        raise SystemExit(f"pass HOST:PORT: found {len(listens)} *_LISTEN variables")
    port = listens[0].rpartition(":")[2]
    return f"127.0.0.1:{port}"


def main(argv: list[str]) -> int:
    address = _address(argv)
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2.0
            )
        except grpc.RpcError as exc:
            print(f"{address}: {exc.code().name}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
