"""Catalog management over gRPC: apply, check with line numbers, revisions, prefix import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_errors import details_of
from suite.catalog_check import check_document, locate
from tests.integration.rating.conftest import SAMPLES, apply_sample_catalog

BROKEN = """\
products:
  - {code: voice, unit: second}
destinations:
  - {name: NL, prefixes: ["31"]}
tax_regions:
  - code: NL
    taxes: [{code: VAT, name: BTW, percent: "21"}]
plans:
  - code: broken
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: nl
            service: voice
            destination: Mars
            first_increment: 60
            next_increment: 0
            prices: {"*": {first: "0.10", nxt: "0.10"}}
"""


async def test_apply_sample_catalog_makes_a_revision_once(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    document = (SAMPLES / "catalog.yaml").read_text(encoding="utf-8")
    first = await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(
            document=document, source_name="catalog.yaml", request_id="apply-1"
        )
    )
    assert first.changed
    assert first.revision == 1
    assert [p.code for p in first.plans] == ["conference-pro"]
    assert first.plans[0].currency == "EUR"
    assert first.prefix_count == 9  # the UK prefix 44 since issue 9 item 6
    again = await stub.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=document))
    assert not again.changed
    assert again.revision == 1
    plan = await stub.GetPlan(rating_pb2.GetPlanRequest(plan_code="conference-pro"))
    assert plan.plan.versions[0].time_bands == "office-hours"
    assert set(plan.plan.versions[0].services) == {"voice", "recording"}
    listed = await stub.ListPlans(rating_pb2.ListPlansRequest())
    assert [p.code for p in listed.plans] == ["conference-pro"]
    revisions = await stub.ListCatalogRevisions(rating_pb2.ListCatalogRevisionsRequest())
    assert [r.revision for r in revisions.revisions] == [1]


async def test_check_names_line_and_field_of_every_problem(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(
                document=BROKEN, validate_only=True, source_name="broken.yaml"
            )
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_CATALOG"
    by_field = {v.field: v.description for v in details.violations}
    assert by_field["document.plans[0].versions[0].rates[0].prices.*.nxt"].startswith("line 20:")
    assert by_field["document.plans[0].versions[0].rates[0].next_increment"].startswith("line 19:")
    # Nothing was applied: before any catalog, the list of plans is empty (not an error).
    none_yet = await stub.ListPlans(rating_pb2.ListPlansRequest())
    assert list(none_yet.plans) == []
    assert not (await stub.ListPricePackages(rating_pb2.ListPricePackagesRequest())).price_packages


async def test_unknown_destination_reference_is_reported_with_its_line(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    fixed = BROKEN.replace("next_increment: 0", "next_increment: 60").replace("nxt", "next")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=fixed))
    violations = details_of(failure.value).violations
    assert [(v.field, v.description.split(":")[0]) for v in violations] == [
        ("document.plans[0].versions[0].rates[0].destination", "line 17")
    ]


async def test_yaml_syntax_error_names_the_line(stub: rating_pb2_grpc.RatingServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(document="plans:\n  - code: x\n    currency: [EUR\n")
        )
    violation = details_of(failure.value).violations[0]
    assert violation.field == "document"
    assert violation.description.startswith("line 4:")


async def test_bulk_prefix_import_makes_a_revision_and_rates_by_longest_prefix(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await apply_sample_catalog(stub)
    # 20,000 extra prefixes: German mobile numbers by operator block, all "DE Mobile".
    lines = ["prefix,destination"] + [f"49{1500 + i % 300}{i:05d},DE Mobile" for i in range(20_000)]
    data = ("\n".join(lines) + "\n").encode()

    def chunks() -> Iterator[rating_pb2.ImportDestinationsRequest]:
        yield rating_pb2.ImportDestinationsRequest(
            file_name="de.csv", has_header=True, chunk=data[:100_000]
        )
        for start in range(100_000, len(data), 100_000):
            yield rating_pb2.ImportDestinationsRequest(chunk=data[start : start + 100_000])

    reply = await stub.ImportDestinations(chunks())
    assert reply.revision == 2
    assert reply.prefix_count == 20_000 + 9  # the document's own prefixes stay
    assert reply.destination_count == 6
    bad = b"prefix,destination\n31,NL\nabc,NL\n"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ImportDestinations(
            iter(
                [
                    rating_pb2.ImportDestinationsRequest(
                        file_name="bad.csv", has_header=True, chunk=bad
                    )
                ]
            )
        )
    assert "chunk.line[3].prefix" in details_of(failure.value).fields


async def test_catalog_request_with_bad_fields_names_them(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    unknown_format: Any = 7
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(document="", request_id="x" * 200, format=unknown_format)
        )
    assert details_of(failure.value).fields == {"document", "request_id", "format"}


def _tab_json(document: Any) -> str:
    """A JSON document the way many editors write it: indented with tabs."""
    return json.dumps(document, indent="\t")


@pytest.mark.parametrize(
    "declared", [rating_pb2.CATALOG_FORMAT_JSON, rating_pb2.CATALOG_FORMAT_YAML]
)
async def test_tab_indented_json_catalog_is_applied_like_the_offline_check_accepts_it(
    stub: rating_pb2_grpc.RatingServiceStub, declared: Any
) -> None:
    # The sample catalog, re-written as tab-indented JSON (values kept as text: exact).
    document = _tab_json(yaml.load((SAMPLES / "catalog.yaml").read_text(), _TextFloats))
    assert "\n\t\t" in document
    assert check_document(document, json_document=True).valid
    reply = await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(document=document, format=declared, source_name="c.json")
    )
    assert reply.changed
    assert [p.code for p in reply.plans] == ["conference-pro"]


async def test_tab_indented_json_problems_are_the_same_online_and_offline(
    stub: rating_pb2_grpc.RatingServiceStub,
) -> None:
    broken = yaml.load(BROKEN, _TextFloats)
    document = _tab_json(broken)
    offline = check_document(document, json_document=True).problems
    assert offline, "the document is broken"
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(
                document=document, format=rating_pb2.CATALOG_FORMAT_JSON, validate_only=True
            )
        )
    online = locate(details_of(failure.value).violations, None)
    assert [(p.path, p.line, p.description) for p in online] == [
        (p.path, p.line, p.description) for p in offline
    ]
    # The line is the one of the JSON text, e.g. the wrong "nxt" price key.
    nxt = next(p for p in offline if p.path.endswith("prices.*.nxt"))
    assert nxt.line is not None
    assert document.splitlines()[nxt.line - 1].strip().startswith('"nxt"')


class _TextFloats(yaml.SafeLoader):
    """Reads the YAML samples keeping decimals and dates as text, to write them as JSON."""


def _as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_TextFloats.add_constructor("tag:yaml.org,2002:float", _as_text)
_TextFloats.add_constructor("tag:yaml.org,2002:timestamp", _as_text)


@pytest.mark.parametrize(
    "data", [b"prefix,destination\n", b"prefix,destination\n\n  \n"], ids=["header", "blank"]
)
async def test_a_destinations_file_without_prefixes_is_refused_and_changes_nothing(
    stub: rating_pb2_grpc.RatingServiceStub, data: bytes
) -> None:
    # Issue 9 item 9: a header-only file used to replace the prefix table with nothing.
    await apply_sample_catalog(stub)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ImportDestinations(
            iter(
                [
                    rating_pb2.ImportDestinationsRequest(
                        file_name="empty.csv", has_header=True, chunk=data
                    )
                ]
            )
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(failure.value)
    assert "no prefixes" in details.violations[0].description
    revisions = await stub.ListCatalogRevisions(rating_pb2.ListCatalogRevisionsRequest())
    assert [r.revision for r in revisions.revisions] == [1]  # no new, empty revision
