"""``python -m bench.charging.in_process``: CPU per Update with no gRPC in front.

The charging composition (``bootstrap``, real Redis started here, SQLite ledger in
a temp directory, the in-memory tariffs of ``bench.charging``) driven by calling
``ChargingServicer.CreditControl`` directly, ``--in-flight`` requests at a time on
256 open sessions. Prints the process CPU per Update (request proto built here
included) for each ``--in-flight`` value: how much a request costs when it shares
its Redis round trip and ledger commit with N others (ADR 0019). Compare values
within one run; the machine is shared. ``--by-number`` names each request's subscriber
by an E.164 number without '+' (a Subscription-Id, ADR 0058) instead of the account id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from google.type import money_pb2
from pydantic import SecretStr

from bench.charging.__main__ import TARIFFS, VOICE, update
from reckon.charging.v1 import charging_pb2 as pb
from services.charging.bootstrap import bootstrap
from services.charging.config import ChargingSettings
from services.charging.entrypoints.grpc_servicer import ChargingServicer
from services.common.heap import settle_heap
from suite.redis_server import EmbeddedRedis

ACCOUNTS = 100
SESSIONS = 256


def number_of(account: str) -> str:
    """The E.164 number (without '+') that names ``acct-<i>`` with ``--by-number``."""
    return f"3161{int(account.removeprefix('acct-')):07d}"


def request(session: str, number: int, account: str, by_number: bool) -> pb.CreditControlRequest:
    message = update(session, number, account)
    if by_number:
        message.ClearField("account_id")
        message.subscription_id.type = pb.SUBSCRIPTION_ID_TYPE_END_USER_E164
        message.subscription_id.data = number_of(account)
    return message


async def _setup(servicer: ChargingServicer) -> deque[tuple[str, str]]:
    await servicer.DefineService(
        pb.DefineServiceRequest(
            service=pb.ServiceDefinition(
                rating_group=VOICE,
                service="voice",
                unit_kind=pb.UNIT_KIND_TIME,
                charging=pb.SERVICE_CHARGING_RATED,
            )
        ),
        None,
    )
    for i in range(ACCOUNTS):
        account = f"acct-{i}"
        await servicer.SetAccountPolicy(
            pb.SetAccountPolicyRequest(
                policy=pb.AccountPolicy(
                    account_id=account, billing_mode=pb.BILLING_MODE_PREPAID, currency_code="EUR"
                )
            ),
            None,
        )
        await servicer.TopUp(
            pb.TopUpRequest(
                account_id=account,
                amount=pb.Quantity(money=money_pb2.Money(currency_code="EUR", units=10**8)),
                request_id=account,
            ),
            None,
        )
    sessions = deque((f"s-{i}", f"acct-{i % ACCOUNTS}") for i in range(SESSIONS))
    for session, account in sessions:
        await servicer.CreditControl(update(session, 0, account), None)
    return sessions


async def _updates(
    servicer: ChargingServicer,
    sessions: deque[tuple[str, str]],
    numbers: dict[str, int],
    in_flight: int,
    count: int,
    by_number: bool = False,
) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            session, account = sessions.popleft()
            numbers[session] = number = numbers.get(session, 0) + 1
            answer = await servicer.CreditControl(
                request(session, number, account, by_number), None
            )
            if answer.result_code != pb.RESULT_CODE_SUCCESS:
                raise RuntimeError(f"{session}: result {answer.result_code}")
            sessions.append((session, account))

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def run(in_flights: list[int], count: int, by_number: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="reckon-charging-inproc-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            settings = ChargingSettings(
                service_token=SecretStr("x" * 24),
                redis_url=redis.url,
                data_dir=Path(tmp),
                tariffs=json.dumps(TARIFFS),
            )
            app = bootstrap(settings)
            await app.start()
            settle_heap()
            servicer = ChargingServicer(app.handlers)
            sessions = await _setup(servicer)
            if by_number:
                for i in range(ACCOUNTS):
                    account = f"acct-{i}"
                    await app.handlers.subscribers.learn(
                        [f"msisdn:+{number_of(account)}"], account, 1, app.clock.now()
                    )
            numbers: dict[str, int] = {}
            try:
                for in_flight in in_flights:
                    await _updates(
                        servicer, sessions, numbers, in_flight, count // 4, by_number
                    )  # warm
                    cpu, wall = time.process_time(), time.perf_counter()
                    await _updates(servicer, sessions, numbers, in_flight, count, by_number)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    print(
                        f"{in_flight:>4} in flight: {count / wall:>7,.0f} Updates/s, "
                        f"{cpu * 1e6 / count:>5,.0f} us CPU per Update"
                    )
            finally:
                await app.close()
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 32, 256])
    parser.add_argument("--requests", type=int, default=8000, help="Updates per measurement")
    parser.add_argument(
        "--sdk-metrics",
        action="store_true",
        help="record metrics with the OpenTelemetry SDK (as a deployed service does)",
    )
    parser.add_argument(
        "--by-number", action="store_true", help="name subscribers by E.164 number (ADR 0058)"
    )
    args = parser.parse_args()
    reader = None
    if args.sdk_metrics:
        # What the service's instruments cost when they record for real; the default
        # (SDK disabled) measures the code alone.
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    asyncio.run(run(args.in_flight, args.requests, args.by_number))
    if reader is not None:
        print_histograms(reader)


def print_histograms(reader: Any) -> None:
    """One JSON line per histogram series: name, attributes, count, mean (ms or units)."""
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if hasattr(point, "bucket_counts") and point.count:
                        line = {
                            "histogram": metric.name,
                            "attributes": dict(point.attributes or {}),
                            "count": point.count,
                            "mean": round(point.sum / point.count, 3),
                        }
                        print(json.dumps(line))


if __name__ == "__main__":
    main()
