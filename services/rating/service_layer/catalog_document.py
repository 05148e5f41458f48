"""Catalog documents as operators write them (YAML or JSON), with line numbers for errors.

The domain's ``parse_catalog`` reads a plain mapping and names each problem by a
path into it (``plans[0].versions[1].rates[2].first_increment``). The text is loaded
by the kit's ``services.common.yaml_document`` (shared with dunning's policies), which
keeps the line of every path and floats as their text, so a catalog prices exactly
what was written; its names are re-exported here for rating's callers.

``read_catalog`` is the one path from text to a validated catalog: ``ApplyCatalog``
and the offline ``reckon catalog check`` both call it, so they accept the same
documents and report the same problems (line and field).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import FieldViolation
from services.common.yaml_document import (
    DocumentSyntaxError,
    LoadedDocument,
    as_mapping,
    load_document,
    looks_like_json,
    with_lines,
)
from services.rating.domain.catalog import Catalog
from services.rating.domain.destinations import DestinationTable
from services.rating.domain.document import parse_catalog
from services.rating.domain.errors import InvalidCatalog

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "CatalogProblem",
    "CatalogReading",
    "DocumentSyntaxError",
    "LoadedDocument",
    "as_mapping",
    "as_violations",
    "load_document",
    "looks_like_json",
    "read_catalog",
    "with_lines",
]


@dataclass(frozen=True)
class CatalogProblem:
    """One problem of a catalog document: the field path ("" for the whole document),
    the line of the text it is on (when known) and what is wrong."""

    path: str
    line: int | None
    description: str


@dataclass(frozen=True)
class CatalogReading:
    catalog: Catalog | None  # set when the document is valid
    problems: list[CatalogProblem]
    document: LoadedDocument | None = None


def read_catalog(
    text: str, *, destinations: DestinationTable | None = None, json_document: bool = False
) -> CatalogReading:
    """Size check, load, validate: every problem of a catalog text with its line."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        limit = MAX_DOCUMENT_BYTES // (1024 * 1024)
        return CatalogReading(None, [CatalogProblem("", None, f"is larger than {limit} MiB")])
    try:
        loaded = load_document(text, json_document=json_document)
    except DocumentSyntaxError as exc:
        return CatalogReading(None, [CatalogProblem("", exc.line, exc.message)])
    document = as_mapping(loaded.content)
    if document is None:
        problem = CatalogProblem("", 1, "a catalog is a mapping (plans:, products: ...)")
        return CatalogReading(None, [problem], loaded)
    try:
        catalog = parse_catalog(document, destinations=destinations)
    except InvalidCatalog as error:
        problems = [
            CatalogProblem(v.field, loaded.line_of(v.field), v.description)
            for v in error.violations
        ]
        return CatalogReading(None, problems, loaded)
    return CatalogReading(catalog, [], loaded)


def as_violations(
    problems: list[CatalogProblem], *, prefix: str = "document"
) -> list[FieldViolation]:
    """Problems as the service reports them: field ``document.<path>``, text ``line N: ...``."""
    return [
        FieldViolation(
            f"{prefix}.{p.path}" if p.path else prefix,
            f"line {p.line}: {p.description}" if p.line is not None else p.description,
        )
        for p in problems
    ]
