"""gRPC health checks (``grpc.health.v1``) of the suite's services, as a client sees them."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from enum import StrEnum

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class Health(StrEnum):
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    UNKNOWN = "UNKNOWN"
    UNREACHABLE = "unreachable"


def check_health(address: str, *, timeout: float = 2.0, service: str = "") -> Health:
    """Ask the server at ``address``; a server that does not answer is UNREACHABLE."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return Health.UNREACHABLE
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return Health.SERVING
    if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
        return Health.NOT_SERVING
    return Health.UNKNOWN


HTTP_SERVICES = frozenset({"gateway"})


def check_service(name: str, address: str, *, timeout: float = 2.0) -> Health:
    """Health of one suite member: gRPC health, or ``GET /healthz`` for the HTTP gateway."""
    if name not in HTTP_SERVICES:
        return check_health(address, timeout=timeout)
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout) as answer:
            return Health.SERVING if answer.status == 200 else Health.NOT_SERVING
    except (urllib.error.URLError, OSError):
        return Health.UNREACHABLE
    except http.client.HTTPException:
        # Something that is not an HTTP server answers on the port (a gRPC server's
        # HTTP/2 preface, say): not the gateway, so not serving; the caller then sees the
        # gateway's own exit (its port was taken) and says so.
        return Health.NOT_SERVING
