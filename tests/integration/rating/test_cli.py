"""``reckon catalog`` and ``reckon usage`` against the running rating service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from services.rating.entrypoints.main import RunningRating
from suite.rating_cli import catalog_app, usage_app
from tests.conftest import TEST_TOKEN
from tests.integration.rating.conftest import SAMPLES, add_account


@pytest.fixture
def cli_env(rating: RunningRating, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATING_ADDR", rating.address)
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("COLUMNS", "200")


async def invoke(app: typer.Typer, *args: str) -> Result:
    # The CLI runs its own event loop: give it a thread so the server keeps serving.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_check_reports_file_line_and_field(cli_env: None, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "plans:\n  - code: x\n    currency: EUR\n    versions:\n"
        "      - {version: 1, valid_from: 2026-01-01, colour: blue}\n"
    )
    result = await invoke(catalog_app, "check", str(broken))
    assert result.exit_code == 1
    assert f"{broken}:5: plans[0].versions[0].colour: unknown field" in result.output


async def test_apply_and_remote_check_locate_the_service_answer_in_the_file(
    cli_env: None, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "# comment lines shift nothing: lines come from this file\n"
        "plans:\n  - code: x\n    currency: EUR\n    versions:\n"
        "      - {version: 1, valid_from: 2026-01-01, colour: blue}\n"
    )
    for args in (["apply"], ["check", "--remote"]):
        result = await invoke(catalog_app, *args, str(broken))
        assert result.exit_code == 1, result.output
        assert f"{broken}:6: plans[0].versions[0].colour: unknown field" in result.output


async def test_apply_import_list_and_reprocess(cli_env: None, rating: RunningRating) -> None:
    applied = await invoke(catalog_app, "apply", str(SAMPLES / "catalog.yaml"))
    assert applied.exit_code == 0, applied.output
    assert "catalog revision 1" in applied.output
    checked = await invoke(catalog_app, "check", str(SAMPLES / "catalog.yaml"))
    assert checked.exit_code == 0
    assert "is valid" in checked.output

    imported = await invoke(usage_app, "import", str(SAMPLES / "cdr" / "conference-legs.csv"))
    assert imported.exit_code == 1  # every record rejected: unknown account -> failed loudly
    assert "FAILED" in imported.output
    assert "UNKNOWN_ACCOUNT" in imported.output

    listed = await invoke(usage_app, "rejects", "--reason", "UNKNOWN_ACCOUNT")
    assert listed.exit_code == 0
    assert "conf-0042-leg1" in listed.output

    add_account(rating, "acc_demo")
    redone = await invoke(usage_app, "reprocess")
    assert redone.exit_code == 0
    assert "rated 5" in redone.output
    assert "NO_TARIFF: 1" in redone.output

    rerated = await invoke(
        usage_app, "rerate", "acc_demo", "--from", "2026-03-01", "--to", "2026-04-01"
    )
    assert rerated.exit_code == 0
    assert "17.85 EUR -> 17.85 EUR (difference 0.00 EUR)" in rerated.output


async def test_unreachable_service_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RATING_ADDR", raising=False)
    monkeypatch.delenv("RECKON_SERVICE_TOKEN", raising=False)
    result = await invoke(usage_app, "rejects", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "no suite is running" in result.output
