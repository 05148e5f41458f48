"""`reckon demo` refuses a running suite that is not on the test clock, and says how."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import suite.cli
from suite.cli import app
from suite.state import SuiteState


def _state(data_dir: Path, *, test_clock: bool) -> SuiteState:
    return SuiteState(
        data_dir=str(data_dir),
        supervisor_pid=os.getpid(),
        started_at="2026-01-01T00:00:00+00:00",
        redis_url="redis://127.0.0.1:1/0",
        redis_pid=None,
        token_file=None,
        trace_receiver=None,
        otlp_endpoint=None,
        traces_file=None,
        test_clock=test_clock,
    )


def test_a_running_suite_without_the_test_clock_is_refused_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite "serving" is stood in for: what is checked is the decision on its state.
    monkeypatch.setattr(suite.cli, "running_suite", lambda _: _state(tmp_path, test_clock=False))
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "not started in test-clock mode" in text
    assert "reckon up --test-clock" in text
