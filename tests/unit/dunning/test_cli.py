"""``reckon dunning check FILE`` offline: FILE:LINE: field: problem, exit 1; valid: exit 0."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from suite.cli import app

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "dunning-policy.yaml"


def test_the_sample_policy_checks_valid() -> None:
    result = CliRunner().invoke(app, ["dunning", "check", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid dunning policy" in result.output


def test_a_bad_policy_is_reported_by_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        SAMPLE.read_text()
        .replace("days_past_due: 14", "days_past_due: 3")
        .replace('EUR: "10.00"', 'EURO: "10.00"')
    )
    result = CliRunner().invoke(app, ["dunning", "check", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(bad))]
    assert lines == [
        f"{bad}:24: levels[1].reactions[1].fixed.EURO: unknown currency 'EURO'",
        f"{bad}:27: levels[2].when.days_past_due: 3 is less than level 2's 7: levels escalate",
    ]
