"""The declarative catalog document: a plain dict (parsed YAML or JSON) to a ``Catalog``.

Operators keep the catalog in git and apply it with ``reckon catalog apply
FILE``; ``reckon catalog check FILE`` reports every problem at once. This module
is the pure part: ``parse_catalog`` validates a document and builds the catalog,
and every problem is a ``FieldViolation`` whose field is a path into the
document (``plans[2].versions[0].rates[0].first_increment``), so the CLI can map
it to a line of the file.

Amounts must be exact: strings (``"0.10"``), integers or Decimals. Floats are
refused, because YAML and JSON parsers turn ``0.10`` into a binary float; load
YAML with floats as strings (or JSON with ``parse_float=Decimal``). Unknown keys
are refused too, so a typo never silently drops a price.

Shape (every list may be empty or absent)::

    numbering: {country_code: "31", international_prefix: "00", national_prefix: "0"}
    products: [{code: voice, unit: second, name: Voice calls}]
    destinations: [{name: NL Mobile, prefixes: ["316", "3197"]}]
    calendars: [{code: nl, holidays: [{date: 2026-12-25, band: weekend}]}]
    time_bands:
      - code: standard
        default_band: offpeak
        calendar: nl
        bands: [{name: peak, days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}]
    tax_regions:
      - code: NL
        rounding: half_up
        taxes: [{code: VAT, name: BTW, percent: "21", inclusive: false, services: [voice]}]
      # Untaxed services of a region are invoiced under its vat_category (Z by default;
      # E exempt, AE reverse charge, K intra-community supply, G export, O not subject).
      - {code: BE-B2B, name: Belgian businesses, vat_category: K}
    discounts: [{code: WELCOME, kind: percent, value: "10", max_uses: 3, uses_per: account,
                 valid_to: ...}]
    referral_rewards: [{code: REFER, points: 500, unit: points}]
    plans:
      - code: conf-basic
        currency: EUR
        versions:
          - version: 1
            valid_from: 2026-01-01T00:00:00Z
            time_bands: standard
            discounts: [WELCOME]
            allowances: [{code: incl, service: voice, units: 6000, destinations: [NL Mobile]}]
            fees: [{code: monthly, kind: recurring, amount: "9.95", timing: in_advance}]
            rates:
              - id: nl-mobile
                service: voice
                destination: NL Mobile
                connection_fee: "0.05"
                first_increment: 60
                next_increment: 60
                prices: {peak: {first: "0.10", next: "0.10"}, "*": {first: "0.05", next: "0.05"}}
                # or per_minute: {peak: "0.10", "*": "0.05"} when the division is exact
                min_cost: "0.10"
                max_cost: "5.00"
                rounding: up
                precision: 2
              - id: data
                service: data
                model: {kind: graduated, unit_size: 1000000,
                        tiers: [{up_to: 1000, unit_price: "0"}, {unit_price: "0.01"}]}
    packages:
      - code: acme
        plan: conf-basic
        customer: cust-42        # or group: reseller-x
        versions: [{version: 1, valid_from: 2026-02-01T00:00:00Z, rates: [...]}]

Model kinds: ``per_unit`` (price, unit_size), ``package`` (size, price),
``graduated`` and ``volume`` (tiers of up_to, unit_price, flat_fee; unit_size),
``percentage`` (percent, fixed_fee). A date without a time means 00:00 UTC.

The reading is split by part of the document: ``document_fields`` (scalars),
``document_reference`` (catalog-wide sections), ``document_rates`` (tariffs and
charge models) and ``document_plans`` (plans, packages, fees).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.common.errors import FieldViolation

from .catalog import Catalog, validate_catalog
from .destinations import DestinationTable
from .document_plans import PlanReader
from .document_reference import ReferenceReader
from .errors import InvalidCatalog


def parse_catalog(
    document: Mapping[str, object], *, destinations: DestinationTable | None = None
) -> Catalog:
    """The catalog a document describes, or ``InvalidCatalog`` listing every problem.

    ``destinations`` is a prefix table loaded separately (a large CSV through
    ``load_destination_rows``); the document's own destinations are added to it.
    """
    reader = _Reader()
    catalog = reader.catalog(document, destinations or DestinationTable.empty())
    if reader.problems:
        raise InvalidCatalog(reader.problems)
    assert catalog is not None
    problems = validate_catalog(catalog)
    if problems:
        raise InvalidCatalog(problems)
    return catalog


def check_catalog(
    document: Mapping[str, object], *, destinations: DestinationTable | None = None
) -> list[FieldViolation]:
    """Every problem of a document (empty when it would apply cleanly)."""
    try:
        parse_catalog(document, destinations=destinations)
    except InvalidCatalog as error:
        return list(error.violations)
    return []


class _Reader(PlanReader, ReferenceReader):
    """Reads a document field by field, collecting problems instead of stopping."""

    def catalog(self, document: Mapping[str, object], table: DestinationTable) -> Catalog | None:
        doc = self.record(document, "", _CATALOG_FIELDS)
        if doc is None:
            return None
        numbering = self.numbering(doc.get("numbering"), "numbering")
        destinations = self.destinations(doc, table)
        products = self.each(doc, "products", "", self.product)
        calendars = self.each(doc, "calendars", "", self.calendar)
        schedules = self.each(doc, "time_bands", "", self.schedule)
        regions = self.each(doc, "tax_regions", "", self.tax_region)
        discounts = self.each(doc, "discounts", "", self.discount)
        rewards = self.each(doc, "referral_rewards", "", self.reward)
        plans = self.each(doc, "plans", "", self.plan)
        packages = self.each(doc, "packages", "", self.package)
        return Catalog(
            products,
            destinations,
            calendars,
            schedules,
            regions,
            discounts,
            rewards,
            plans,
            packages,
            numbering,
        )


_CATALOG_FIELDS: Final = frozenset(
    {
        "numbering",
        "products",
        "destinations",
        "calendars",
        "time_bands",
        "tax_regions",
        "discounts",
        "referral_rewards",
        "plans",
        "packages",
    }
)


__all__ = ["check_catalog", "parse_catalog"]
