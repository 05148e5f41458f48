"""The pure parts: SMS encoding and parts, quiet hours, rules, addresses, retry schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import pytest

from services.notifications.domain.addresses import (
    email_problem,
    phone_problem,
    webhook_url_problem,
)
from services.notifications.domain.model import (
    SEND_BACKOFF,
    WEBHOOK_SCHEDULE,
    Category,
    Channel,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
    language_of,
    next_delay,
)
from services.notifications.domain.rules import RuleError, parse_rules
from services.notifications.domain.sms import decode_part, gsm7_encode, parse_receipt, split_sms

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def test_gsm7_and_ucs2_choice() -> None:
    assert gsm7_encode("Hello €") == b"Hello \x1be"
    assert gsm7_encode("Привет") is None
    [part] = split_sms("x" * 160, 1)
    assert part.data_coding == 0
    assert part.esm_class == 0
    assert len(split_sms("x" * 161, 1)) == 2
    [ucs] = split_sms("я" * 70, 1)
    assert ucs.data_coding == 8
    assert len(split_sms("я" * 71, 1)) == 2


def test_parts_never_split_an_escape_or_a_surrogate_pair() -> None:
    text = "a" * 152 + "€" + "b" * 10  # the escape would be septet 153
    parts = split_sms(text, 3)
    assert parts[0].short_message[-1] != 0x1B
    assert "".join(decode_part(p.short_message, 0, p.esm_class)[0] for p in parts) == text
    emoji = "я" * 66 + "😀" + "я" * 10  # the pair would straddle 134 bytes
    parts = split_sms(emoji, 4)
    assert "".join(decode_part(p.short_message, 8, p.esm_class)[0] for p in parts) == emoji


def test_receipts() -> None:
    receipt = parse_receipt("id:abc123 sub:001 dlvrd:001 submit date:2701011200 stat:UNDELIV err:1")
    assert receipt is not None
    assert (receipt.message_id, receipt.final, receipt.delivered) == ("abc123", True, False)
    assert parse_receipt("hello") is None


def test_quiet_hours_over_midnight_in_the_accounts_zone() -> None:
    quiet = Preference("c", Channel.SMS, quiet_start=time(22, 0), quiet_end=time(7, 0))
    late = datetime(2027, 3, 1, 22, 30, tzinfo=UTC)  # 23:30 in Amsterdam (CET)
    assert quiet.quiet_until(late, "Europe/Amsterdam") == datetime(2027, 3, 2, 6, 0, tzinfo=UTC)
    early = datetime(2027, 3, 2, 5, 0, tzinfo=UTC)  # 06:00 local
    assert quiet.quiet_until(early, "Europe/Amsterdam") == datetime(2027, 3, 2, 6, 0, tzinfo=UTC)
    assert quiet.quiet_until(NOW, "Europe/Amsterdam") is None


def test_opt_outs() -> None:
    marketing_out = Preference("c", Channel.EMAIL, marketing_opted_out=True)
    assert marketing_out.allows(Category.LEGAL)
    assert marketing_out.allows(Category.SERVICE)
    assert not marketing_out.allows(Category.MARKETING)
    assert not Preference("c", Channel.SMS).allows(Category.SERVICE, needs_opt_in=True)
    assert Preference("c", Channel.SMS, opted_in=True).allows(Category.SERVICE, needs_opt_in=True)
    assert not Preference("c", Channel.SMS, opted_out=True).allows(Category.SERVICE)


def test_rules_name_the_bad_field() -> None:
    good = parse_rules({"rules": [{"event": "E", "channel": "email", "template": "t"}]})
    assert good.rules[0].channel is Channel.EMAIL
    for document, where in [
        ({"rules": [{"event": "E", "channel": "fax", "template": "t"}]}, "rules[0].channel"),
        ({"rules": [{"event": "E", "channel": "SMS"}]}, "rules[0].template"),
        ({"rules": [{"event": "E", "channel": "SMS", "template": "t", "attach": ["invoice_pdf"]}]},
         "rules[0].attach"),
        ({"rules": [{"event": "E", "channel": "EMAIL", "template": "t", "colour": 1}]},
         "rules[0].colour"),
        ({"rules": "x"}, "rules"),
    ]:  # fmt: skip
        with pytest.raises(RuleError, match="^" + re.escape(where)):
            parse_rules(document)


def test_group_rules_win_and_conditions_select_dunning_levels() -> None:
    book = parse_rules({"rules": [
        {"event": "DunningLevelReached", "channel": "EMAIL", "template": "r1",
         "when": {"level": 1}},
        {"event": "DunningLevelReached", "channel": "EMAIL", "template": "r2",
         "when": {"level": 2}},
        {"event": "InvoiceIssued", "channel": "EMAIL", "template": "plain"},
        {"event": "InvoiceIssued", "channel": "EMAIL", "template": "vip", "groups": ["grp_vip"]},
    ]})  # fmt: skip
    assert [r.template for r in book.select("DunningLevelReached", {"level": 2}, "")] == ["r2"]
    assert [r.template for r in book.select("InvoiceIssued", {}, "grp_vip")] == ["vip"]
    assert [r.template for r in book.select("InvoiceIssued", {}, "grp_x")] == ["plain"]


def test_addresses() -> None:
    assert email_problem("ada@example.com") is None
    for bad in ("", "ada", "ada@", "a b@example.com", "ada@example", "ada@@example.com"):
        assert email_problem(bad), bad
    assert phone_problem("+31612345678") is None
    for bad in ("", "0612345678", "+0612345678", "+31 6 1234", "+1234"):
        assert phone_problem(bad), bad
    assert webhook_url_problem("https://crm.example.com/hook") is None
    assert webhook_url_problem("http://127.0.0.1:8080/x", frozenset({50051})) is None
    assert webhook_url_problem("http://[::1]:50051/x", frozenset({50051}))
    assert webhook_url_problem("javascript:alert(1)")


def test_language_of() -> None:
    assert [language_of(c) for c in ("ru-RU", "nl_BE", "FR", "de", "")] == [
        "ru",
        "nl",
        "fr",
        "en",
        "en",
    ]


def _message(channel: Channel) -> Message:
    return Message("m", "e", "T", channel, "r", "c", "", "t", "en", Category.SERVICE, {},
                   MessageStatus.QUEUED, NOW, NOW)  # fmt: skip


def test_backoff_gives_up_after_three_days_and_webhooks_after_the_schedule() -> None:
    assert [next_delay(Channel.EMAIL, n) for n in range(1, 8)] == [*SEND_BACKOFF, SEND_BACKOFF[-1]]
    email = _message(Channel.EMAIL)
    now = NOW
    while email.status is MessageStatus.QUEUED:
        email.failed_for_now(now, "down")
        now = email.next_attempt_at
    assert email.status is MessageStatus.FAILED
    assert timedelta(days=2) < now - NOW <= timedelta(days=3)
    hook = _message(Channel.WEBHOOK)
    for delay in WEBHOOK_SCHEDULE:
        hook.failed_for_now(NOW, "500")
        assert hook.next_attempt_at == NOW + delay
    hook.failed_for_now(NOW, "500")
    assert hook.status is MessageStatus.FAILED


def test_endpoint_disabled_after_five_days_of_failure_only() -> None:
    endpoint = WebhookEndpoint("whe", "https://x.example", [], "whsec_a", "o@x.example", "", True,
                               NOW)  # fmt: skip
    assert not endpoint.delivery_failed(NOW)
    assert not endpoint.delivery_failed(NOW + timedelta(days=4))
    endpoint.delivered()  # a success starts the count again
    assert not endpoint.delivery_failed(NOW + timedelta(days=4, hours=1))
    assert not endpoint.delivery_failed(NOW + timedelta(days=9))
    assert endpoint.delivery_failed(NOW + timedelta(days=9, hours=1))
    assert not endpoint.enabled
    assert not endpoint.wants("InvoiceIssued")
