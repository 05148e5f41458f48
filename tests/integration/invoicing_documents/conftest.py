"""One Saxon worker (spawned process, EN 16931 rules compiled once) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.invoicing.documents.validation import SchematronWorker


@pytest.fixture(scope="session")
def schematron() -> Iterator[SchematronWorker]:
    with SchematronWorker() as worker:
        yield worker
