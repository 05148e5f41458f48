"""PricePlanFees (RAT-3/RAT-5 for invoicing): plan fees priced by rating, and the real
rating answering invoicing's fee pricer (``RatingFeePricer``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
import yaml

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_client import open_sync_channel
from services.invoicing.adapters.rating_pricer import RatingFeePricer
from services.invoicing.domain.builder import FeeTiming, TaxRate
from services.invoicing.domain.parties import AccountFacts
from services.rating.entrypoints.main import RunningRating
from tests.conftest import TEST_TOKEN
from tests.integration.rating.conftest import SAMPLES


async def apply_catalog_with_fees(stub: rating_pb2_grpc.RatingServiceStub) -> None:
    document = yaml.safe_load((SAMPLES / "catalog.yaml").read_text(encoding="utf-8"))
    version = document["plans"][0]["versions"][0]
    version["fees"] = [
        {
            "code": "monthly",
            "kind": "recurring",
            "amount": "29.95",
            "timing": "in_advance",
            "name": "Monthly fee",
        },
        {"code": "meter", "kind": "recurring", "amount": "5.00", "timing": "in_arrears"},
        {"code": "setup", "kind": "one_time", "amount": "49.00", "name": "Activation"},
    ]
    await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(document=yaml.safe_dump(document), source_name="fees.yaml")
    )


async def test_plan_fees_are_priced_with_the_regions_vat(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_catalog_with_fees(stub)
    reply = await stub.PricePlanFees(
        rating_pb2.PricePlanFeesRequest(
            account_id="acc_x",
            customer_id="cus_x",
            tax_region="NL",
            plan_codes=["conference-pro", "no-such-plan"],
            services=["voice"],
        )
    )
    fees = {
        (f.fee_code, f.timing, f.net.units, f.net.nanos, f.tax_category, f.tax_rate)
        for f in reply.fees
    }
    assert fees == {
        ("monthly", "in_advance", 29, 950_000_000, "S", "21"),
        ("meter", "in_arrears", 5, 0, "S", "21"),
        ("setup", "one_time", 49, 0, "S", "21"),
    }
    assert list(reply.unknown_plan_codes) == ["no-such-plan"]
    assert [(r.service, r.tax_category, r.tax_rate) for r in reply.tax_rates] == [
        ("voice", "S", "21")
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PricePlanFees(rating_pb2.PricePlanFeesRequest(plan_codes=["conference-pro"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_invoicings_fee_pricer_asks_the_running_rating(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_catalog_with_fees(stub)
    account = AccountFacts(
        account_id="acc_x",
        customer_id="cus_x",
        currency="EUR",
        time_zone="Europe/Amsterdam",
        bill_cycle_day=1,
        tax_region="NL",
        payment_terms_days=14,
        payment_mode="POSTPAID",
        parent_account_id="",
        state="ACTIVE",
        reseller_id="",
        group_id="",
        create_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    pricer = RatingFeePricer(open_sync_channel(rating.address, TEST_TOKEN, traced=False))
    try:
        pricing = await asyncio.to_thread(
            pricer.quote, account, ["conference-pro"], ["voice"], datetime(2026, 3, 1, tzinfo=UTC)
        )
    finally:
        pricer.close()
    advance = pricing.of("conference-pro", FeeTiming.IN_ADVANCE)
    assert [(f.code, f.amount.amount) for f in advance] == [("monthly", Decimal("29.95"))]
    assert [f.code for f in pricing.of("conference-pro", FeeTiming.ONE_TIME)] == ["setup"]
    assert pricing.tax_for("voice") == TaxRate("S", Decimal(21))


async def test_a_tax_region_without_vat_names_its_vat_category(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    """Intra-community supply (K), reverse charge (AE), exempt (E), not subject (O): a
    region's ``vat_category`` is what its untaxed services are invoiced under."""
    document = yaml.safe_load((SAMPLES / "catalog.yaml").read_text(encoding="utf-8"))
    document["tax_regions"] += [
        {"code": "EU-B2B", "name": "EU business customers", "vat_category": "K"},
        {"code": "EU-RC", "vat_category": "ae"},
        {"code": "OUTSIDE", "vat_category": "O"},
        {"code": "NL-MED", "vat_category": "E"},
        {"code": "NOWHERE"},
    ]
    await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(document=yaml.safe_dump(document), source_name="vat.yaml")
    )
    answers = {}
    for region in ("NL", "EU-B2B", "EU-RC", "OUTSIDE", "NL-MED", "NOWHERE"):
        reply = await stub.PricePlanFees(
            rating_pb2.PricePlanFeesRequest(
                account_id="acc_x", customer_id="cus_x", tax_region=region,
                plan_codes=["conference-pro"], services=["voice"],
            )
        )  # fmt: skip
        answers[region] = [(r.tax_category, r.tax_rate) for r in reply.tax_rates]
    assert answers == {
        "NL": [("S", "21")],
        "EU-B2B": [("K", "0")],
        "EU-RC": [("AE", "0")],
        "OUTSIDE": [("O", "0")],
        "NL-MED": [("E", "0")],
        "NOWHERE": [("Z", "0")],
    }

    document["tax_regions"].append({"code": "BAD", "vat_category": "S"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(document=yaml.safe_dump(document), source_name="bad")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "vat_category" in caught.value.details()
