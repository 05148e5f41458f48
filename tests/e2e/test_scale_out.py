"""Scale-out on one machine: two charging and two rating replicas behind one address.

Two ``services.charging`` and two ``services.rating`` processes on PostgreSQL (a
schema per service, dropped afterwards) and a three-master Redis Cluster (charging's
balances; rating keeps its outbox and consumers on a standalone Redis, since it does
not speak the cluster protocol). Clients dial ``ipv4:127.0.0.1:p1,127.0.0.1:p2``
through the kit's ``open_channel`` (round_robin, retry on UNAVAILABLE); charging
dials rating the same way. The charging hammer's mixed load (unary and streams,
every request 1 to 5 times, vanishing clients, some sessions priced by rating) runs
through both; one charging replica is then killed with SIGKILL, later one rating
replica. Asserted afterwards through the public API: balances equal the ledger, no
prepaid balance below zero, every reported use charged exactly once (rating's price
for the priced sessions), vanished clients' reservations back, both replicas of each
service did work before the kill and the load went on through the survivors.

A second test restarts rating (one replica, same port) under priced load: charging
waits for it within its deadline, and no credit-control call fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_client import open_channel
from services.rating.bootstrap import RatingApp, bootstrap
from services.rating.config import RatingSettings
from services.rating.entrypoints.main import RunningRating
from suite.redis_server import EmbeddedRedis
from tests.conftest import POSTGRES_URL, TEST_TOKEN, require_postgres
from tests.e2e.hammer import (
    GRACE_SECONDS,
    HAMMER_ENV,
    RETURN_SLACK_SECONDS,
    RPC_TIMEOUT,
    VALIDITY_SECONDS,
    VOICE,
    Account,
    Observed,
    check_books,
    define_services,
    mixed_accounts,
    mixed_load,
    open_mixed_accounts,
    outcomes,
    rid,
    session,
    unary_sender,
    wait_until_nothing_reserved,
)
from tests.e2e.replicas import Replica, round_robin_target
from tests.integration.rating.conftest import add_account
from tests.redis_cluster import start_cluster, stop_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

# The rating plan every hammered account is on: 0.10 EUR per started minute to the
# Netherlands plus 20% VAT, 0.12 gross (hammer.VOICE_PRICE).
CATALOG = """
products: [{code: voice, unit: second}]
destinations: [{name: NL, prefixes: ["31"]}]
tax_regions:
  - {code: NL, name: NL, rounding: half_up,
     taxes: [{code: VAT, name: VAT 20%, percent: "20", inclusive: false}]}
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {id: nl, service: voice, destination: NL, first_increment: 60,
              next_increment: 60, prices: {"*": {first: "0.10", next: "0.10"}}}
"""
# Charging's deadline on a rating call: long enough to wait out a rating restart
# (the call waits for the channel to be ready), shorter than the caller's RPC_TIMEOUT.
RATING_TIMEOUT_SECONDS = 4.0
SWEEP_LEASE_MS = 2000
# The same with a single rating process restarted (the second test).
RESTART_RATING_TIMEOUT_SECONDS = 10.0
# A CPU second or so per replica in the first phase says round_robin used both.
MIN_WORK_SECONDS = 0.3


@dataclass
class Infrastructure:
    tmp: Path
    cluster: list[EmbeddedRedis]
    rating_redis: EmbeddedRedis
    charging_schema: str
    rating_schema: str
    rating_seed: RatingApp

    def rating(self, name: str, port: int | None = None) -> Replica:
        replica = Replica(
            "rating",
            {
                "REDIS_URL": self.rating_redis.url,
                "DATABASE_URL": POSTGRES_URL,
                "RATING_DATABASE_SCHEMA": self.rating_schema,
                "RECKON_DATA_DIR": str(self.tmp / name),
            },
            self.tmp / f"{name}.log",
        )
        if port is not None:
            replica.port = port
        return replica

    def charging(self, name: str, rating_addr: str, **extra: str) -> Replica:
        return Replica(
            "charging",
            {
                **HAMMER_ENV,
                "REDIS_URL": self.cluster[0].url,
                "CHARGING_REDIS_CLUSTER": "true",
                "DATABASE_URL": POSTGRES_URL,
                "CHARGING_DATABASE_SCHEMA": self.charging_schema,
                "RECKON_DATA_DIR": str(self.tmp / name),
                "RATING_ADDR": rating_addr,
                "CHARGING_RATING_TIMEOUT_SECONDS": str(RATING_TIMEOUT_SECONDS),
                # Accounts a killed replica had leased for sweeping wait for the lease
                # to run out (default 30 s) before the survivor sweeps them.
                "CHARGING_SWEEP_LEASE_MS": str(SWEEP_LEASE_MS),
                **extra,
            },
            self.tmp / f"{name}.log",
        )

    def seed_rating_accounts(self, accounts: list[Account]) -> None:
        """Rating's account view, as the accounts service's events would feed it."""
        running = cast(RunningRating, _SeedOnly(self.rating_seed))
        for account in accounts:
            add_account(running, account.account_id, since=datetime(2026, 1, 1, tzinfo=UTC))


@dataclass
class _SeedOnly:
    app: RatingApp


@pytest.fixture(scope="module")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    require_postgres()
    tmp = tmp_path_factory.mktemp("scale")
    schemas = (f"so{os.getpid()}_charging", f"so{os.getpid()}_rating")
    cluster = start_cluster(lambda port: tmp / f"cluster-{port}")
    rating_redis = EmbeddedRedis(tmp / "rating-redis").start()
    seed: RatingApp | None = None
    try:
        # Migrates rating's schema once, before any replica starts.
        seed = bootstrap(
            RatingSettings(
                service_token=SecretStr(TEST_TOKEN),
                redis_url=rating_redis.url,
                data_dir=tmp / "rating-seed",
                database_url=POSTGRES_URL,
                database_schema=schemas[1],
            )
        )
        yield Infrastructure(tmp, cluster, rating_redis, *schemas, seed)
    finally:
        if seed is not None:
            seed.close()
        rating_redis.stop()
        stop_cluster(cluster)
        engine = create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


async def apply_catalog(address: str) -> None:
    async with open_channel(address, TEST_TOKEN, traced=False) as channel:
        await rating_pb2_grpc.RatingServiceStub(channel).ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(document=CATALOG, source_name="scale.yaml"),
            timeout=RPC_TIMEOUT,
        )


async def define_voice(charging: charging_pb2_grpc.ChargingServiceStub) -> None:
    """VOICE: seconds priced by rating (RAT-8)."""
    await charging.DefineService(
        pb.DefineServiceRequest(
            service=pb.ServiceDefinition(
                rating_group=VOICE,
                service="voice",
                unit_kind=pb.UNIT_KIND_TIME,
                charging=pb.SERVICE_CHARGING_RATED,
            ),
            request_id=rid(),
        ),
        timeout=RPC_TIMEOUT,
    )


@pytest.fixture
async def replicas(
    infrastructure: Infrastructure,
) -> AsyncIterator[tuple[list[Replica], list[Replica]]]:
    """Two rating replicas, then two charging replicas dialling both (one at a time:
    the first migrates its schema)."""
    ratings = [infrastructure.rating(f"rating-{n}") for n in range(2)]
    chargings = [
        infrastructure.charging(f"charging-{n}", round_robin_target(ratings)) for n in range(2)
    ]
    try:
        for replica in (*ratings, *chargings):
            replica.start()
            await asyncio.to_thread(replica.wait_serving)
        await apply_catalog(ratings[0].address)
        yield ratings, chargings
    finally:
        for replica in (*chargings, *ratings):
            replica.stop(grace=5)


async def test_two_replicas_each_one_killed_under_the_hammer(
    infrastructure: Infrastructure, replicas: tuple[list[Replica], list[Replica]]
) -> None:
    ratings, chargings = replicas
    rng = random.Random(15)
    seen = Observed()
    accounts = mixed_accounts()
    infrastructure.seed_rating_accounts(accounts)
    async with open_channel(round_robin_target(chargings), TEST_TOKEN, traced=False) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        await define_services(charging)
        await define_voice(charging)
        await open_mixed_accounts(charging, accounts)
        # Both charging replicas learn the new services (the catalog is cached per process).
        await asyncio.sleep(0.5)

        cpu_before = {r.address: r.cpu_seconds() for r in (*chargings, *ratings)}
        stop = asyncio.Event()
        load = asyncio.create_task(mixed_load(charging, accounts, seen, rng, stop, voice_share=0.7))
        events: list[str] = []
        try:
            await asyncio.sleep(5)
            worked = {
                r.address: r.cpu_seconds() - cpu_before[r.address] for r in (*chargings, *ratings)
            }
            events.append(f"CPU seconds per replica before the kills {worked}")
            before_kill = seen.requests
            chargings[0].kill()
            events.append(f"SIGKILL charging {chargings[0].pid} after {seen.requests} requests")
            await asyncio.sleep(4)
            ratings[0].kill()
            events.append(f"SIGKILL rating {ratings[0].pid} after {seen.requests} requests")
            await asyncio.sleep(4)
            events.append(f"stopped after {seen.requests} requests")
        finally:
            stop.set()
            streams = await load

        await wait_until_nothing_reserved(
            charging,
            [a.account_id for a in accounts],
            VALIDITY_SECONDS + GRACE_SECONDS + RETURN_SLACK_SECONDS + SWEEP_LEASE_MS / 1000 + 3,
        )
        figures = await check_books(charging, accounts, seen)
    print(
        f"sessions {seen.sessions} (vanished {seen.vanished}, voice {len(seen.voice)}), "
        f"requests {seen.requests}, copies {seen.copies}, errors seen by clients "
        f"{dict(seen.errors)}, streams {[p.streams for p in streams]}; {'; '.join(events)}; "
        f"{figures}; answers {outcomes(seen)}"
    )
    # round_robin spread the load: every replica worked before the kills.
    assert all(seconds >= MIN_WORK_SECONDS for seconds in worked.values()), worked
    # The survivors took the load: as many requests again after the kills.
    assert seen.requests - before_kill > before_kill / 4, events
    # Priced sessions were priced by rating (else they would be charged nothing).
    assert len(seen.voice) > 10
    # Only what the hammer tolerates reached the clients: UNAVAILABLE (retried with the
    # same request number) and streams the kill broke (reopened, their requests resent).
    # A stream on a SIGKILLed replica ends UNAVAILABLE, or INTERNAL when the kill cut an
    # HTTP/2 frame, as the client's transport sees it; no answer said INTERNAL.
    failed = {e for e in seen.errors if e != "UNAVAILABLE" and not e.startswith("stream ")}
    assert failed == set(), seen.errors


async def test_a_rating_restart_under_load_costs_charging_no_failed_call(
    infrastructure: Infrastructure,
) -> None:
    rating = infrastructure.rating("rating-alone")
    # One rating process: while it restarts nobody answers, so charging's deadline on a
    # rating call must outlast a restart (~4 s on two busy cores), and the caller's its.
    charging_replica = infrastructure.charging(
        "charging-alone",
        rating.address,
        CHARGING_RATING_TIMEOUT_SECONDS=str(RESTART_RATING_TIMEOUT_SECONDS),
        # Sessions outlive a request that waits out the restart.
        CHARGING_VALIDITY_SECONDS="60",
    )
    rng = random.Random(5)
    seen = Observed()
    accounts = [
        Account(f"restart-{i}-{rid()}", pb.BILLING_MODE_POSTPAID, Decimal(50)) for i in range(6)
    ]
    infrastructure.seed_rating_accounts(accounts)
    try:
        for replica in (rating, charging_replica):
            replica.start()
            await asyncio.to_thread(replica.wait_serving)
        await apply_catalog(rating.address)
        async with open_channel(charging_replica.address, TEST_TOKEN, traced=False) as channel:
            charging = charging_pb2_grpc.ChargingServiceStub(channel)
            await open_mixed_accounts(charging, accounts)
            await define_voice(charging)
            send = unary_sender(charging, timeout=RESTART_RATING_TIMEOUT_SECONDS + 5)
            stop = asyncio.Event()

            async def client() -> None:
                while not stop.is_set():
                    account = rng.choice(accounts).account_id
                    await session(send, account, VOICE, seen, rng)

            load = [asyncio.create_task(client()) for _ in range(8)]
            try:
                await asyncio.sleep(2)
                before = seen.requests
                started = time.monotonic()
                await asyncio.to_thread(rating.stop)
                rating.start()
                serving_after = await asyncio.to_thread(rating.wait_serving)
                gap = time.monotonic() - started
                await asyncio.sleep(2)
            finally:
                stop.set()
                await asyncio.gather(*load)
            await check_books(charging, accounts, seen)
    finally:
        charging_replica.stop(grace=5)
        rating.stop(grace=5)
    print(
        f"rating down and back on port {rating.port} in {gap:.2f}s "
        f"(new process serving after {serving_after:.2f}s); requests {before} before, "
        f"{seen.requests} in all; answers {outcomes(seen)}; errors {dict(seen.errors)}"
    )
    assert seen.requests > before
    # No credit-control call failed: charging's rating calls waited for the restart.
    assert dict(seen.errors) == {}
    assert set(outcomes(seen)) == {"RESULT_CODE_SUCCESS"}, outcomes(seen)
