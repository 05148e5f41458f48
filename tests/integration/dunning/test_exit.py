"""Leaving dunning (DUN-3) on SQLite and PostgreSQL: payment, credit note, closed account,
disputes that pause it, exemptions; and the list of accounts in dunning."""

from __future__ import annotations

from datetime import timedelta

from services.dunning.service_layer import handlers, runs
from tests.integration.dunning.conftest import DUE, Dunning


def _paid(dunning: Dunning, invoice_id: str = "inv_1", event_type: str = "InvoicePaid") -> None:
    dunning.invoice(invoice_id, status="PAID", amount_due="0", event_type=event_type)


def test_a_payment_between_runs_ends_dunning_at_once_and_restores_service(
    dunning: Dunning,
) -> None:
    dunning.invoice("inv_1")
    dunning.run(14)
    with dunning.uow() as uow:
        account = uow.accounts.get("acc_1")
        assert account is not None
        assert (account.state, account.service_action) == ("ACTIVE", "SUSPENDED")
    dunning.day(16)
    _paid(dunning)  # the event alone, no run
    (ended,) = dunning.events("DunningEnded")
    assert ended["reason"] == "PAID"
    assert ended["service_restored"] is True
    assert (0, "RESTORE", "PENDING") in dunning.reactions()
    # Invoicing is told each level the invoice reached, then that it left dunning.
    told = [
        (lv, st) for lv, kind, st in dunning.reactions(bookkeeping=True) if kind == "RECORD_LEVEL"
    ]
    assert told == [(3, "PENDING"), (0, "PENDING")]
    with dunning.uow() as uow:
        account = uow.accounts.get("acc_1")
        invoice = uow.invoices.get("inv_1")
    assert account is not None
    assert invoice is not None
    assert (account.state, account.level, account.service_action) == ("ENDED", 0, "")
    assert invoice.paid_on == DUE + timedelta(days=16)
    # The next run finds nothing to do for the account.
    before = dunning.reactions()
    dunning.run(17)
    assert dunning.reactions() == before


def test_a_dispute_pauses_dunning_for_the_disputed_amount(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    dunning.run(8)
    dunning.invoice("inv_1", event_type="DisputeOpened", disputed="100.00")
    (paused,) = dunning.events("DunningPaused")
    assert paused["amount_disputed"] == {"amount": "100.00", "currency": "EUR"}
    dunning.run(14)
    dunning.run(20)
    assert [r for r in dunning.reactions() if r[0] >= 3] == []
    (listed,), _ = handlers.list_cases(dunning.uow())
    assert listed.account.state == "PAUSED"
    # The dispute is lost: the money is owed again and dunning resumes where it was.
    dunning.invoice("inv_1", event_type="DisputeResolved", disputed="0")
    assert len(dunning.events("DunningResumed")) == 1
    dunning.run(21)
    assert (3, "SUSPEND", "PENDING") in dunning.reactions()


def test_a_partial_dispute_leaves_the_rest_in_dunning(dunning: Dunning) -> None:
    dunning.invoice("inv_1", disputed="40.00")
    dunning.run(7)
    (listed,), _ = handlers.list_cases(dunning.uow())
    assert listed.facts.amount_overdue is not None
    assert str(listed.facts.amount_overdue.amount) == "60.00"
    assert listed.facts.disputed_overdue == 40


def test_a_credit_note_that_clears_the_invoice_ends_dunning(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    dunning.run(7)
    _paid(dunning, event_type="CreditNoteIssued")
    (ended,) = dunning.events("DunningEnded")
    assert ended["reason"] == "PAID"
    assert ended["service_restored"] is False
    assert all(kind != "RESTORE" for _, kind, _ in dunning.reactions())


def test_a_closed_account_leaves_dunning_without_restore(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    dunning.run(14)
    dunning.event(
        "AccountStateChanged", account_id="acc_1", from_state="SUSPENDED", to_state="CLOSED"
    )
    (ended,) = dunning.events("DunningEnded")
    assert ended["reason"] == "ACCOUNT_CLOSED"
    assert ended["service_restored"] is False
    dunning.run(30)
    assert [r for r in dunning.reactions() if r[0] == 4] == []


def test_an_exempt_account_is_not_dunned_until_its_exemption_ends(dunning: Dunning) -> None:
    dunning.invoice("inv_1")
    dunning.day(0)
    handlers.set_exemption(
        dunning.uow(), "acc_1", "key account", DUE + timedelta(days=20), clear=False
    )
    dunning.run(14)
    assert dunning.reactions() == []
    dunning.run(21)
    assert sorted(dunning.reactions()) == [
        (2, "LATE_FEE", "PENDING"),
        (3, "EMAIL", "DONE"),
        (3, "SUSPEND", "PENDING"),
    ]


def test_a_redelivered_event_changes_nothing(dunning: Dunning) -> None:
    payload = {
        "invoice_id": "inv_9",
        "account_id": "acc_9",
        "customer_id": "cus_9",
        "currency": "EUR",
        "status": "OPEN",
        "total": {"amount": "5.00", "currency": "EUR"},
        "amount_due": {"amount": "5.00", "currency": "EUR"},
        "due_date": DUE.isoformat(),
    }
    now = dunning.clock.now()
    assert handlers.on_event(dunning.uow(), "evt_same", "InvoiceIssued", payload, now)
    assert not handlers.on_event(dunning.uow(), "evt_same", "InvoiceIssued", payload, now)


def test_the_list_shows_level_amount_days_and_next_step_with_filters(dunning: Dunning) -> None:
    dunning.invoice("inv_1", "acc_1", amount="100.00")
    dunning.invoice("inv_2", "acc_2", amount="250.00", due=DUE - timedelta(days=7))
    dunning.invoice("inv_3", "acc_3", amount="30.00", due=DUE + timedelta(days=30))
    dunning.run(1)
    views, last = handlers.list_cases(dunning.uow())
    assert last == ""
    rows = {
        v.account.account_id: (
            v.account.level,
            str(v.facts.amount_overdue.amount if v.facts.amount_overdue else 0),
            v.facts.days_past_due,
            v.next_level.name if v.next_level else "",
            v.next_date,
        )
        for v in views
    }
    assert rows == {
        "acc_1": (1, "100.00", 1, "sms and late fee", DUE + timedelta(days=7)),
        "acc_2": (2, "250.00", 8, "suspended", DUE + timedelta(days=7)),
    }
    level_two, _ = handlers.list_cases(dunning.uow(), level=2)
    assert [v.account.account_id for v in level_two] == ["acc_2"]
    first_page, after = handlers.list_cases(dunning.uow(), limit=1)
    assert [v.account.account_id for v in first_page] == ["acc_1"]
    second_page, _ = handlers.list_cases(dunning.uow(), limit=1, after=after)
    assert [v.account.account_id for v in second_page] == ["acc_2"]
    recent, _ = handlers.list_cases(dunning.uow(), min_days_past_due=5)
    assert [v.account.account_id for v in recent] == ["acc_2"]


def test_a_group_policy_wins_over_the_default_and_a_new_version_applies(dunning: Dunning) -> None:
    vip = """\
code: vip
applies_to: {groups: [vip]}
levels:
  - name: courtesy call
    when: {days_past_due: 20}
    reactions: [{kind: email, template: dunning_final_notice}]
"""
    first = handlers.apply_policy(dunning.uow(), vip)
    assert first.policy.version == 1
    assert handlers.apply_policy(dunning.uow(), vip).policy.version == 1  # same text
    dunning.event("AccountCreated", account_id="acc_v", customer_id="cus_v", group_id="vip")
    dunning.invoice("inv_v", "acc_v", customer_id="cus_v")
    dunning.invoice("inv_1")
    dunning.run(14)
    assert dunning.reactions("acc_v") == []
    assert (3, "SUSPEND", "PENDING") in dunning.reactions("acc_1")
    second = handlers.apply_policy(
        dunning.uow(), vip.replace("days_past_due: 20", "days_past_due: 15")
    )
    assert second.policy.version == 2
    dunning.run(15)
    assert dunning.reactions("acc_v") == [(1, "EMAIL", "DONE")]
    (reached,) = [e for e in dunning.events("DunningLevelReached") if e["account_id"] == "acc_v"]
    assert (reached["policy_code"], reached["policy_version"]) == ("vip", 2)


def test_an_event_does_not_end_a_case_a_run_of_a_coming_date_opened(dunning: Dunning) -> None:
    dunning.invoice("inv_1")  # the clock is before the due date
    runs.run_inline(dunning.uow, DUE + timedelta(days=7))  # asked on demand, ahead
    dunning.event("AccountUpdated", account_id="acc_1", customer_id="cus_1", group_id="")
    assert dunning.events("DunningEnded") == []
    (listed,), _ = handlers.list_cases(dunning.uow())
    assert listed.account.level == 2
    _paid(dunning)  # paid: now it ends
    assert [e["reason"] for e in dunning.events("DunningEnded")] == ["PAID"]
