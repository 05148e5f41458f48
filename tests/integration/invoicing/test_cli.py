"""``reckon billrun`` against a running invoicing service: preview, start, show, list."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from typer.testing import CliRunner

from services.accounts.domain.events import SubscriptionChangeKind
from services.common.ids import new_id
from suite.cli import app
from tests.conftest import TEST_TOKEN
from tests.integration.invoicing.conftest import World


async def test_billrun_commands_preview_start_and_show_a_run(world: World) -> None:
    customer_id, account_id = await world.account()
    await world.subscription_change(
        account_id,
        customer_id,
        SubscriptionChangeKind.CREATED,
        world.clock.now(),
        subscription_id=new_id("sub"),
    )
    await world.processed(3)
    world.clock.set(datetime(2027, 2, 1, 6, 0, tzinfo=UTC))
    runner = CliRunner()
    env = {
        "RECKON_SERVICE_TOKEN": TEST_TOKEN,
        "INVOICING_ADDR": f"127.0.0.1:{world.service.port}",
        "COLUMNS": "200",
    }

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["billrun", *args], env=env)
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(invoke, "preview", "--account", account_id)
    assert code == 0, output
    assert account_id in output
    assert "76.23 EUR" in output  # 31 + 10 + 22 = 63.00 + 13.23 VAT
    assert world.row_counts()["invoices"] == 0

    code, output = await asyncio.to_thread(invoke, "start", "--account", account_id, "--accept")
    assert code == 0, output
    assert "ACCEPTED" in output
    assert "1 finalised" in output
    run_id = output.split("started bill run ")[1].split()[0]
    code, output = await asyncio.to_thread(invoke, "show", run_id)
    assert code == 0, output
    assert "76.23 EUR" in output, output
    code, output = await asyncio.to_thread(invoke, "list")
    assert code == 0, output
    assert run_id in output, output
    code, output = await asyncio.to_thread(invoke, "accept", run_id)
    assert code == 1, output
    assert "INVALID_BILL_RUN_STATE" in output, output
    code, output = await asyncio.to_thread(invoke, "start", "--bcd", "40")
    assert code == 1, output
    assert "scope.bill_cycle_day" in output, output
