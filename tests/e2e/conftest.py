"""When an end-to-end test fails, show the last lines of every service log of the suite.

A failure seen from the client (INTERNAL, a missing span) is usually explained by
a traceback in a service's log; printing it here saves digging in temp directories.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from suite.state import SuiteStateError, read_state

LOG_LINES = 30
_failed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_failed] = True
    return report


@pytest.fixture(autouse=True)
def service_logs_on_failure(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    yield
    if not request.node.stash.get(_failed, False):
        return
    for suite_json in sorted(Path(tmp_path_factory.getbasetemp()).rglob("suite.json")):
        try:
            state = read_state(suite_json.parent)
        except SuiteStateError:
            continue
        for record in state.services:
            lines = Path(record.log_file).read_text(errors="replace").splitlines()
            print(
                f"--- last lines of {record.log_file}",
                *lines[-LOG_LINES:],
                sep="\n",
                file=sys.stderr,
            )
