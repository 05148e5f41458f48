"""The credit-control tests on a local three-master Redis Cluster (issue 4 item 10).

Three ``redis-server --cluster-enabled yes`` processes on free loopback ports are
joined with ``redis-cli --cluster create``; the app talks to them through
``redis.asyncio.cluster.RedisCluster``. Every key a script touches shares the
account's hash tag and the sweeper's index is sharded over its own tags, so the
same scripts and tests run unchanged. The processes are stopped by the PIDs this
module started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from services.charging.bootstrap import ChargingApp
from services.common.clock import ManualClock
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging import (
    test_accounts_and_events,
    test_concurrency,
    test_sessions,
    test_supervision,
)
from tests.integration.charging.support import charging_app, new_account
from tests.redis_cluster import start_cluster, stop_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmbeddedRedis]]:
    nodes = start_cluster(lambda port: tmp_path_factory.mktemp(f"cluster-{port}"))
    yield nodes
    stop_cluster(nodes)


@pytest.fixture
async def cluster_client(cluster: list[EmbeddedRedis]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster[0].port)
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_app(
    database: TestDatabase,
    cluster_client: RedisCluster,
    cluster: list[EmbeddedRedis],
    clock: ManualClock,
) -> AsyncIterator[ChargingApp]:
    url = f"redis://127.0.0.1:{cluster[0].port}/0"
    async with charging_app(
        database,
        cluster_client,
        url,
        clock=clock,
        redis_cluster=True,
    ) as app:
        yield app


async def test_the_cluster_spreads_accounts_over_three_masters(
    cluster_app: ChargingApp,
    cluster_client: RedisCluster,
) -> None:
    for i in range(30):
        await new_account(cluster_app, f"spread{i}", balance="1.00")
    slots = {cluster_client.keyslot(f"ch:{{acct:spread{i}}}:a") for i in range(30)}
    nodes = [cluster_client.get_node_from_key(f"ch:{{acct:spread{i}}}:a") for i in range(30)]
    owners = {node.name for node in nodes if node is not None}
    assert len(slots) == 30
    assert len(owners) == 3


async def test_prepaid_call(cluster_app: ChargingApp) -> None:
    await test_sessions.test_prepaid_call_reserves_debits_and_releases_money(cluster_app)


async def test_free_units_first(cluster_app: ChargingApp) -> None:
    await test_sessions.test_free_minutes_are_used_before_money(cluster_app)


async def test_repeated_requests(cluster_app: ChargingApp) -> None:
    await test_sessions.test_repeated_request_gets_the_first_answer_and_charges_once(cluster_app)


async def test_final_unit_and_postpaid(cluster_app: ChargingApp) -> None:
    await test_sessions.test_partial_money_grant_is_final(cluster_app)
    await test_sessions.test_postpaid_runs_to_the_credit_limit(cluster_app)


async def test_retries(cluster_app: ChargingApp) -> None:
    await test_concurrency.test_every_request_retried_up_to_five_times_is_charged_once(cluster_app)


async def test_crash_between_script_and_commit(cluster_app: ChargingApp) -> None:
    await test_concurrency.test_a_crash_between_script_and_commit_is_neither_lost_nor_doubled(
        cluster_app
    )
    await test_concurrency.test_a_crashed_request_whose_client_never_retries_is_drained(cluster_app)


async def test_1000_concurrent_reservations(cluster_app: ChargingApp) -> None:
    await test_concurrency.test_1000_concurrent_reservations_grant_exactly_what_the_balance_covers(
        [cluster_app] * 4
    )


async def test_vanishing_clients(cluster_app: ChargingApp, clock: ManualClock) -> None:
    await test_supervision.test_vanished_clients_get_every_reservation_returned_within_validity_and_grace(  # noqa: E501
        cluster_app, clock
    )
    await test_supervision.test_usage_reported_after_the_sweep_is_still_debited(cluster_app, clock)


async def test_states_and_events(cluster_app: ChargingApp, clock: ManualClock) -> None:
    await test_accounts_and_events.test_suspended_accounts_keep_only_free_services(
        cluster_app, clock
    )
    await test_accounts_and_events.test_direct_debit_refund_balance_check_and_price_enquiry(
        cluster_app
    )


async def test_a_node_flushed_mid_run_is_rebuilt(
    cluster_app: ChargingApp,
    cluster_client: RedisCluster,
    cluster: list[EmbeddedRedis],
) -> None:
    for i in range(9):
        await new_account(cluster_app, f"lost{i}", balance="2.00")
    # One master loses everything (a restart without persistence).
    victim = cluster_client.get_node_from_key("ch:{acct:lost0}:a")
    await cluster_client.flushall(target_nodes=victim)
    for i in range(9):
        balance = await cluster_app.handlers.balance(f"lost{i}")
        assert [(line.bucket.bucket_id, line.available) for line in balance.lines] == [
            ("main-EUR", 2_000_000)
        ]
    assert cluster_app.loader.rebuilt >= 1
