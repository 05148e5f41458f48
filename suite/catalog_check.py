"""Catalog documents checked on the operator's machine, problems named by file line and field.

``reckon catalog check FILE`` needs no running suite: the document is read with the
rating service's own loader (``catalog_document.load_document``: YAML or JSON, floats
kept as written, a line recorded for every path) and validated by the pure domain
(``services.rating.domain.parse_catalog``), the same two steps ``ApplyCatalog`` runs.
Each problem becomes a ``DocumentProblem`` printed as ``FILE:LINE: path: what``.

The line map also serves answers of the running service: ``ApplyCatalog`` names
fields ``document.<path>``, which ``locate`` maps through the local file's lines.

Offline, rates may only name destinations the document defines, or those of a
prefix CSV given with ``--destinations``; the service checks against the prefix
table in force (``--remote``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.common.errors import FieldViolation
from services.rating.domain import Catalog, DestinationTable, load_destination_rows
from services.rating.domain.errors import InvalidCatalog
from services.rating.service_layer.catalog_document import (
    DocumentSyntaxError,
    LoadedDocument,
    load_document,
    read_catalog,
)
from services.rating.service_layer.catalog_document import (
    looks_like_json as looks_like_json,
)

DOCUMENT_FIELD: Final = "document"
# How the service writes a line into a description: "line 12: must be ...".
_LINE_PREFIX: Final = re.compile(r"^line (\d+): (.*)$", re.DOTALL)
# How the domain names a row of a prefix CSV: "line[12].prefix".
_CSV_ROW: Final = re.compile(r"^line\[(\d+)\]\.?(.*)$")


@dataclass(frozen=True)
class DocumentProblem:
    """One problem of a file: where (line, field path) and what."""

    path: str  # field path inside the document; "" for the document as a whole
    line: int | None
    description: str
    # Problems of the request rather than the file (e.g. ``source_name``) are not located.
    in_file: bool = True

    def render(self, source: str) -> str:
        label = f"{self.path}: " if self.path else ""
        if not self.in_file:
            return f"{label}{self.description}"
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {label}{self.description}"


@dataclass(frozen=True)
class CheckResult:
    problems: list[DocumentProblem]
    catalog: Catalog | None  # set when the document is valid

    @property
    def valid(self) -> bool:
        return not self.problems


def index_document(text: str, *, json_document: bool = False) -> LoadedDocument:
    """The parsed document and its path -> line map; ``DocumentSyntaxError`` if unreadable."""
    return load_document(text, json_document=json_document)


def check_document(
    text: str, *, json_document: bool = False, destinations: DestinationTable | None = None
) -> CheckResult:
    """Every problem of a catalog document, each with its line, or the catalog it describes.

    The service's own reading (``read_catalog``), so a document passes here exactly
    when ``ApplyCatalog`` accepts it (against the same prefixes) and the problems match.
    """
    reading = read_catalog(
        text,
        destinations=destinations,
        json_document=json_document,
    )
    problems = [DocumentProblem(p.path, p.line, p.description) for p in reading.problems]
    return CheckResult(problems, reading.catalog)


def locate(
    violations: Iterable[FieldViolation], text: str | None, *, json_document: bool = False
) -> list[DocumentProblem]:
    """The service's field violations (``document.<path>``) as problems of the local file.

    Lines come from the local file's map when it can be read; otherwise from the
    ``line N:`` the service wrote into the description.
    """
    loaded: LoadedDocument | None = None
    if text is not None:
        try:
            loaded = index_document(text, json_document=json_document)
        except DocumentSyntaxError:
            loaded = None
    problems = []
    for violation in violations:
        field, description = violation.field, violation.description
        said = _LINE_PREFIX.match(description)
        line = int(said.group(1)) if said else None
        if said:
            description = said.group(2)
        if field != DOCUMENT_FIELD and not field.startswith(f"{DOCUMENT_FIELD}."):
            problems.append(DocumentProblem(field, None, description, in_file=False))
            continue
        path = field.removeprefix(DOCUMENT_FIELD).removeprefix(".")
        if loaded is not None and path:
            line = loaded.line_of(path) or line
        problems.append(DocumentProblem(path, line, description))
    return problems


# -- prefix tables --------------------------------------------------------------------


class DestinationsError(ValueError):
    """A prefix CSV with problems; ``problems`` name its lines."""

    def __init__(self, problems: list[DocumentProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def _csv_rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        yield from csv.reader(stream)


def load_destinations(path: Path, *, has_header: bool = False) -> DestinationTable:
    """A prefix table from a CSV (``prefix,destination`` per line), as the service loads it.

    ``OSError`` and ``UnicodeDecodeError`` pass through; content problems raise
    ``DestinationsError`` naming each line.
    """
    try:
        return load_destination_rows(_csv_rows(path), has_header=has_header)
    except InvalidCatalog as error:
        problems = []
        for violation in error.violations:
            row = _CSV_ROW.match(violation.field)
            if row:
                problems.append(
                    DocumentProblem(row.group(2), int(row.group(1)), violation.description)
                )
            else:
                problems.append(DocumentProblem(violation.field, None, violation.description))
        raise DestinationsError(problems) from None
