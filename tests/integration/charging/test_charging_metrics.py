"""Charging's own histograms, recorded by the OpenTelemetry SDK on the real hot path.

A separate process (the global meter provider can be set once per process): the
in-process benchmark with ``--sdk-metrics`` runs the charging composition on a real
Redis and SQLite, sends Updates, and prints every histogram series it recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from suite.supervisor import CODE_ROOT

pytestmark = pytest.mark.slow


def test_script_and_ledger_commit_durations_are_recorded() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.charging.in_process",
            "--in-flight",
            "1",
            "8",
            "--requests",
            "100",
            "--sdk-metrics",
        ],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    series = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    scripts = {
        s["attributes"]["script"]: s
        for s in series
        if s["histogram"] == "reckon.charging.script.duration"
    }
    # Every Update runs credit_control; the set-up ran the others (top-ups, sessions).
    assert "credit_control" in scripts, series
    # One point per script per pipeline: at most one per call, fewer when batched.
    assert 0 < scripts["credit_control"]["count"] <= 200 + 256
    assert all(s["mean"] > 0 for s in scripts.values())
    commits = [s for s in series if s["histogram"] == "reckon.charging.ledger.commit.duration"]
    batches = [s for s in series if s["histogram"] == "reckon.charging.ledger.batch"]
    assert len(commits) == 1
    assert commits[0]["mean"] > 0
    # One commit duration per group commit, as many as batch sizes recorded.
    assert commits[0]["count"] == batches[0]["count"]
