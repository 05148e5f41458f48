"""Catalog use cases (RAT-1): apply a catalog document, import destination prefixes.

Every change makes a new **catalog revision**: the document as the operator wrote
it (comments included, so ``reckon catalog`` history reads like the file in git)
plus the destination prefix set in force. Plans inside a document carry their own
versions with activation dates, so a revision can hold a future price change; the
engine picks the plan version in force at each event's time. Re-rating uses the
newest revision, which is how a tariff correction reaches past usage.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.clock import Clock
from services.common.errors import FieldViolation, InvalidArgument
from services.common.ids import new_id
from services.rating.domain.catalog import Catalog
from services.rating.domain.destinations import DestinationTable, load_destination_rows
from services.rating.domain.engine import RatingEngine
from services.rating.domain.errors import InvalidCatalog
from services.rating.service_layer.catalog_document import as_violations, read_catalog
from services.rating.service_layer.events import CatalogApplied
from services.rating.service_layer.model import CatalogRevision, PrefixSet
from services.rating.service_layer.tariffs import Tariff, TariffCache
from services.rating.service_layer.unit_of_work import RatingUnitOfWork

UowFactory = Callable[[], RatingUnitOfWork]


@dataclass(frozen=True)
class CatalogOutcome:
    revision: int
    changed: bool
    catalog: Catalog
    prefix_count: int


def _document_catalog(
    text: str, destinations: DestinationTable, *, document_format: str = "yaml"
) -> Catalog:
    """Parse and validate a document; problems name ``document.<path>`` and the line.

    The same reading as ``reckon catalog check`` (``read_catalog``), so both accept
    the same documents and report the same problems.
    """
    reading = read_catalog(text, destinations=destinations, json_document=document_format == "json")
    if reading.catalog is None:
        raise InvalidArgument(as_violations(reading.problems), reason="INVALID_CATALOG")
    return reading.catalog


def _checksum(document: str, prefix_set_id: str | None) -> str:
    return hashlib.sha256(f"{document}\0{prefix_set_id or ''}".encode()).hexdigest()


def _prefix_table(uow: RatingUnitOfWork, set_id: str | None) -> DestinationTable:
    if not set_id:
        return DestinationTable.empty()
    return DestinationTable(dict(uow.catalog.prefix_rows(set_id)))


def _install(
    uow: RatingUnitOfWork,
    tariffs: TariffCache,
    clock: Clock,
    *,
    document: str,
    document_format: str,
    source_name: str,
    prefix_set_id: str | None,
    catalog: Catalog,
) -> tuple[int, Tariff]:
    engine = RatingEngine(catalog)
    revision = CatalogRevision(
        revision=None,
        checksum=_checksum(document, prefix_set_id),
        document=document,
        document_format=document_format,
        source_name=source_name[:255],
        prefix_set_id=prefix_set_id,
        plan_count=len(catalog.plans),
        prefix_count=len(catalog.destinations),
        applied_at=clock.now(),
    )
    number = uow.catalog.add(revision)
    uow.publish(CatalogApplied(number, sorted(catalog.plan_codes()), len(catalog.destinations)))
    tariff = Tariff.of(number, engine)
    return number, tariff


def apply_catalog(
    uow_factory: UowFactory,
    tariffs: TariffCache,
    clock: Clock,
    *,
    document: str,
    document_format: str = "yaml",
    source_name: str = "",
    validate_only: bool = False,
    request_id: str = "",
) -> CatalogOutcome:
    fingerprint = hashlib.sha256(
        f"{document}\0{document_format}\0{source_name}\0{validate_only}".encode()
    ).hexdigest()
    with uow_factory() as uow:
        current = uow.catalog.current()
        prefix_set_id = current.prefix_set_id if current is not None else None
        destinations = _prefix_table(uow, prefix_set_id)
    catalog = _document_catalog(document, destinations, document_format=document_format)
    if validate_only:
        number = current.revision if current is not None and current.revision else 0
        return CatalogOutcome(number, False, catalog, len(catalog.destinations))
    with uow_factory() as uow:
        replayed = uow.replayed_resource("apply_catalog", request_id, fingerprint)
        if replayed is not None:
            return CatalogOutcome(int(replayed), False, catalog, len(catalog.destinations))
        latest = uow.catalog.current()
        if (
            latest is not None
            and latest.revision is not None
            and latest.checksum == _checksum(document, latest.prefix_set_id)
        ):
            uow.remember_request("apply_catalog", request_id, fingerprint, str(latest.revision))
            uow.commit()
            return CatalogOutcome(latest.revision, False, catalog, len(catalog.destinations))
        if latest is not None and latest.prefix_set_id != prefix_set_id:
            # Prefixes changed while we validated: validate against the new table.
            catalog = _document_catalog(
                document, _prefix_table(uow, latest.prefix_set_id), document_format=document_format
            )
            prefix_set_id = latest.prefix_set_id
        number, tariff = _install(
            uow,
            tariffs,
            clock,
            document=document,
            document_format=document_format,
            source_name=source_name or "catalog",
            prefix_set_id=prefix_set_id,
            catalog=catalog,
        )
        uow.remember_request("apply_catalog", request_id, fingerprint, str(number))
        uow.commit()
    tariffs.installed(tariff)
    return CatalogOutcome(number, True, catalog, len(catalog.destinations))


@dataclass(frozen=True)
class DestinationsOutcome:
    revision: int
    prefix_count: int
    destination_count: int


def _csv_rows(path: Path) -> Iterator[list[str]]:
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                # Reported by the domain loader as a malformed row with its line.
                yield ["\ufffd"]
                continue
            yield next(csv.reader(io.StringIO(text)), [])


def import_destinations(
    uow_factory: UowFactory,
    tariffs: TariffCache,
    clock: Clock,
    *,
    path: Path,
    file_name: str,
    has_header: bool,
    request_id: str = "",
) -> DestinationsOutcome:
    """Replace the destination prefix table with a CSV file (prefix, destination per line)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    checksum = digest.hexdigest()
    fingerprint = hashlib.sha256(f"{checksum}\0{has_header}".encode()).hexdigest()
    try:
        table = load_destination_rows(_csv_rows(path), has_header=has_header)
    except InvalidCatalog as error:
        raise InvalidArgument(
            [FieldViolation(f"chunk.{v.field}", v.description) for v in error.violations],
            reason="INVALID_DESTINATIONS",
        ) from None
    with uow_factory() as uow:
        replayed = uow.replayed_resource("import_destinations", request_id, fingerprint)
        if replayed is not None:
            return DestinationsOutcome(int(replayed), len(table), len(table.names()))
        current = uow.catalog.current()
        document = current.document if current is not None else "{}"
        document_format = current.document_format if current is not None else "yaml"
        # The catalog in force must still hold with the new prefixes (rates name destinations).
        catalog = _document_catalog(document, table, document_format=document_format)
        set_id = new_id("pfx")
        uow.catalog.add_prefix_set(
            PrefixSet(
                set_id,
                file_name[:255] or "destinations.csv",
                checksum,
                len(table),
                len(table.names()),
                clock.now(),
            ),
            table.items(),
        )
        number, tariff = _install(
            uow,
            tariffs,
            clock,
            document=document,
            document_format=document_format,
            source_name=current.source_name if current is not None else "destinations",
            prefix_set_id=set_id,
            catalog=catalog,
        )
        uow.remember_request("import_destinations", request_id, fingerprint, str(number))
        uow.commit()
    tariffs.installed(tariff)
    in_force = catalog.destinations
    return DestinationsOutcome(number, len(in_force), len(in_force.names()))
