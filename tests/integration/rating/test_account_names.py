"""CDRs name accounts the way switches and other systems do (issue 9 item 12): by the
account's external reference (``ext:ACC-7``), a number (with or without ``+``), a SIP
URI, a conference PIN or a bridge account code, all learnt from accounts' events; and a
price package may name its customer by the customer's external reference."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.rating.entrypoints.main import RunningRating
from services.rating.service_layer.accounts_view import apply_account_event
from tests.integration.rating.conftest import SAMPLES, account_event, add_account, upload

PACKAGE = """
packages:
  - code: crm42-special
    plan: conference-pro
    customer: ext:CRM-42          # the customer's external reference
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: nl-special
            service: voice
            destination: NL
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.01", next: "0.01"}}
"""

HEADER = "record_id,account_id,service,destination,event_time,quantity\n"
NAMES = {
    "r1": "ext:ACC-7",
    "r2": "31612345678",  # the number without its +
    "r3": "sip:Ada@Example.com",
    "r4": "482913",  # the conference PIN
    "r5": "BRIDGE-7",  # the bridge's account code
    "r6": "acc_demo",  # an account id, as before
    "r7": "+4930999999",  # nobody's number
}


def feed_named_account(rating: RunningRating) -> None:
    app = rating.app
    created = {
        "account_id": "acc_named",
        "customer_id": "cus_named",
        "currency_code": "EUR",
        "time_zone": "Europe/Amsterdam",
        "bill_cycle_day": 1,
        "tax_region": "NL",
        "state": "ACTIVE",
        "external_ref": "ACC-7",
        "customer_external_ref": "CRM-42",
    }
    subscribed = {
        "subscription_id": "sub_named",
        "account_id": "acc_named",
        "customer_id": "cus_named",
        "kind": "CREATED",
        "plan_code": "conference-pro",
        # A backdated start: the migration's subscription began last year.
        "effective_time": datetime(2025, 6, 1, tzinfo=UTC).isoformat(),
        "service_ids": [
            "msisdn:+31612345678",
            "sip:ada@example.com",
            "pin:482913",
            "code:BRIDGE-7",
        ],
    }
    apply_account_event(app.uow_factory, app.clock, account_event("AccountCreated", created))
    apply_account_event(
        app.uow_factory, app.clock, account_event("SubscriptionChanged", subscribed)
    )


async def test_cdrs_find_accounts_by_reference_number_uri_pin_and_code(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    document = (SAMPLES / "catalog.yaml").read_text(encoding="utf-8") + PACKAGE
    await stub.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=document))
    add_account(rating, "acc_demo")
    feed_named_account(rating)
    data = HEADER + "".join(
        f"{record},{name},voice,0205550101,2026-03-02T09:00:00Z,60\n"
        for record, name in NAMES.items()
    )
    imported = await upload(stub, "named.csv", data.encode())
    assert (imported.rated, imported.rejected) == (6, 1)
    reply = await stub.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=50))
    rows = {u.record_id: (u.account_id, u.net.nanos, u.amount.nanos) for u in reply.rated_usage}
    # The package's 0.01 a minute for CRM-42's account (VAT 0.0021 -> 0.00); the sample's
    # 0.05 + 0.10 for acc_demo (VAT 0.0315 -> 0.03).
    special = ("acc_named", 10_000_000, 10_000_000)
    assert rows == {
        "r1": special,
        "r2": special,
        "r3": special,
        "r4": special,
        "r5": special,
        "r6": ("acc_demo", 150_000_000, 180_000_000),
    }
    # Questions take the same names: a quote for the number is the package's price.
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    for name in ("ext:ACC-7", "+31612345678", "BRIDGE-7"):
        quote = await stub.Quote(
            rating_pb2.QuoteRequest(
                account_id=name,
                service="voice",
                destination="0205550101",
                event_time=at,
                quantity=rating_pb2.Quantity(value=60, unit=rating_pb2.QUANTITY_UNIT_SECOND),
            )
        )
        assert quote.charge.net.nanos == 10_000_000, name
    rejects = await stub.ListRejects(rating_pb2.ListRejectsRequest(file_id=imported.file_id))
    assert [(r.record_id, r.reason) for r in rejects.rejects] == [("r7", "UNKNOWN_ACCOUNT")]

    # The number is given to a subscription later: re-processing finds its account.
    later = {
        "subscription_id": "sub_late",
        "account_id": "acc_demo",
        "customer_id": "cus_demo",
        "kind": "CREATED",
        "plan_code": "conference-pro",
        "effective_time": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        "service_ids": ["msisdn:+4930999999"],
    }
    app = rating.app
    apply_account_event(app.uow_factory, app.clock, account_event("SubscriptionChanged", later))
    redone = await stub.ReprocessRejects(
        rating_pb2.ReprocessRejectsRequest(file_id=imported.file_id)
    )
    assert redone.rated == 1
    again = await stub.ListRatedUsage(
        rating_pb2.ListRatedUsageRequest(account_id="acc_demo", page_size=50)
    )
    assert sorted(u.record_id for u in again.rated_usage) == ["r6", "r7"]
