"""The charging hammer's setup: its settings, quantities, services, accounts and requests.

The settings (``HAMMER_ENV``) make reservations expire within seconds so the
hammer sees them swept; ``define_services`` and ``open_account`` prepare the
rating groups and accounts, ``ccr`` builds one credit-control request.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from google.type import money_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc

VALIDITY_SECONDS = 3
GRACE_SECONDS = 1
SWEEP_INTERVAL_SECONDS = 0.2
# The sweeper runs every interval; a reservation due at validity + grace is back at
# most one interval later, plus scheduling noise on two shared cores.
RETURN_SLACK_SECONDS = 1.5
HAMMER_ENV = {
    "CHARGING_VALIDITY_SECONDS": str(VALIDITY_SECONDS),
    "CHARGING_GRACE_SECONDS": str(GRACE_SECONDS),
    "CHARGING_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
    "CHARGING_REBUILD_FENCE_MS": "300",
    "CHARGING_JOURNAL_DRAIN_MS": "1000",
    "CHARGING_LEDGER_STALE_SECONDS": "1.0",
}

CONTENT = 10  # money-measured rating group: requests are amounts of EUR
MINUTES = 20  # time rating group drawn from time buckets only
# A time rating group priced by the rating service (only where a test wires one in):
# VOICE_PRICE per started minute of the whole session, to VOICE_DESTINATION.
VOICE = 30
VOICE_DESTINATION = "31201234567"
VOICE_PRICE = Decimal("0.12")
EUR = "EUR"
OK = pb.RESULT_CODE_SUCCESS
RPC_TIMEOUT = 5.0
# A request that keeps failing (Redis down) is retried for this long, same number.
RETRY_BUDGET_SECONDS = 20.0


def eur(amount: str | Decimal) -> pb.Quantity:
    value = Decimal(amount)
    units = int(value)
    nanos = int((value - units) * 1_000_000_000)
    return pb.Quantity(money=money_pb2.Money(currency_code=EUR, units=units, nanos=nanos))


def seconds(n: int) -> pb.Quantity:
    return pb.Quantity(time_seconds=n)


def amount_of(quantity: pb.Quantity) -> Decimal:
    """The exact amount of a quantity in its own unit (EUR or seconds)."""
    which = quantity.WhichOneof("value")
    if which == "money":
        return Decimal(quantity.money.units) + Decimal(quantity.money.nanos) / 10**9
    if which is None:
        return Decimal(0)
    return Decimal(getattr(quantity, which))


def rid() -> str:
    return secrets.token_hex(8)


async def define_services(stub: charging_pb2_grpc.ChargingServiceStub) -> None:
    for definition in (
        pb.ServiceDefinition(
            rating_group=CONTENT,
            service="content",
            unit_kind=pb.UNIT_KIND_MONEY,
            charging=pb.SERVICE_CHARGING_RATED,
        ),
        pb.ServiceDefinition(
            rating_group=MINUTES,
            service="minutes",
            unit_kind=pb.UNIT_KIND_TIME,
            charging=pb.SERVICE_CHARGING_UNITS_ONLY,
            default_quota=30,
        ),
    ):
        await stub.DefineService(
            pb.DefineServiceRequest(service=definition, request_id=rid()), timeout=RPC_TIMEOUT
        )


async def open_account(
    stub: charging_pb2_grpc.ChargingServiceStub,
    account_id: str,
    mode: pb.BillingMode.ValueType,
    *,
    balance: str = "0",
    credit_limit: str = "0",
    minutes: int = 0,
) -> None:
    policy = pb.AccountPolicy(account_id=account_id, billing_mode=mode, currency_code=EUR)
    if mode != pb.BILLING_MODE_PREPAID:
        policy.credit_limit.CopyFrom(eur(credit_limit).money)
    await stub.SetAccountPolicy(
        pb.SetAccountPolicyRequest(policy=policy, request_id=rid()), timeout=RPC_TIMEOUT
    )
    if Decimal(balance) > 0:
        await stub.TopUp(
            pb.TopUpRequest(account_id=account_id, amount=eur(balance), request_id=rid()),
            timeout=RPC_TIMEOUT,
        )
    if minutes:
        await stub.CreateBucket(
            pb.CreateBucketRequest(
                bucket=pb.Bucket(account_id=account_id, unit_kind=pb.UNIT_KIND_TIME, label="min"),
                initial_amount=seconds(minutes),
                request_id=rid(),
            ),
            timeout=RPC_TIMEOUT,
        )


def ccr(
    session: str,
    kind: pb.RequestType.ValueType,
    number: int,
    account: str,
    group: int,
    *,
    requested: pb.Quantity | None = None,
    used: pb.Quantity | None = None,
) -> pb.CreditControlRequest:
    services = pb.MultipleServicesCreditControl(rating_group=group)
    if group == VOICE:
        services.destination = VOICE_DESTINATION
    if requested is not None:
        services.requested_units.CopyFrom(requested)
    if used is not None:
        services.used_units.CopyFrom(used)
    return pb.CreditControlRequest(
        session_id=session,
        request_type=kind,
        request_number=number,
        account_id=account,
        multiple_services=[services],
    )
