"""Notification rules: which event goes out on which channel with which template.

Rules are configuration (``rules.yaml``, ``NOTIFICATIONS_RULES_FILE``), not code.
A rule names an event type, a channel (EMAIL or SMS), a template and a category;
optionally the customer groups it applies to, conditions on the event's payload
(``when: {level: 1}``, so dunning levels fit without code) and whether the
customer must have opted in to the channel (``opt_in: true``, e.g. SMS on each
charge). For one event and channel the rules naming the customer's group win over
the rules for every group. Webhooks need no rules: every business event goes to
the endpoints subscribed to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.notifications.domain.model import Category, Channel

ATTACHMENTS = frozenset({"invoice_pdf", "einvoice_xml"})


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Rule:
    event_type: str
    channel: Channel
    template: str
    category: Category = Category.SERVICE
    groups: frozenset[str] = frozenset()
    when: Mapping[str, Any] = field(default_factory=dict)
    opt_in: bool = False
    attach: tuple[str, ...] = ()

    def matches(self, event_type: str, payload: Mapping[str, Any], group_id: str) -> bool:
        if event_type != self.event_type:
            return False
        if self.groups and group_id not in self.groups:
            return False
        return all(str(payload.get(key)) == str(value) for key, value in self.when.items())


@dataclass(frozen=True)
class RuleBook:
    rules: tuple[Rule, ...]

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(rule.event_type for rule in self.rules)

    @property
    def templates(self) -> frozenset[tuple[str, Channel]]:
        return frozenset((rule.template, rule.channel) for rule in self.rules)

    def select(self, event_type: str, payload: Mapping[str, Any], group_id: str) -> list[Rule]:
        """The rules that apply, per channel: group-specific ones over the general ones."""
        matching = [r for r in self.rules if r.matches(event_type, payload, group_id)]
        chosen: list[Rule] = []
        for channel in Channel:
            mine = [r for r in matching if r.channel is channel]
            specific = [r for r in mine if r.groups]
            chosen.extend(specific or mine)
        return chosen


def parse_rules(document: Any) -> RuleBook:
    """Rules from the decoded YAML; every problem names ``rules[i].field``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("rules"), Sequence):
        raise RuleError("rules: expected a mapping with a list under 'rules'")
    rules = []
    for index, raw in enumerate(document["rules"]):
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise RuleError(f"{where}: expected a mapping")
        unknown = set(raw) - {"event", "channel", "template", "category", "groups", "when",
                              "opt_in", "attach"}  # fmt: skip
        if unknown:
            raise RuleError(f"{where}.{sorted(unknown)[0]}: unknown field")
        for name in ("event", "channel", "template"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise RuleError(f"{where}.{name}: required text")
        try:
            channel = Channel(raw["channel"].upper())
        except ValueError:
            raise RuleError(f"{where}.channel: expected EMAIL or SMS") from None
        if channel is Channel.WEBHOOK:
            raise RuleError(f"{where}.channel: webhooks take every event; no rule needed")
        try:
            category = Category(str(raw.get("category", "SERVICE")).upper())
        except ValueError:
            raise RuleError(f"{where}.category: expected LEGAL, SERVICE or MARKETING") from None
        groups = raw.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise RuleError(f"{where}.groups: expected a list of group ids")
        when = raw.get("when") or {}
        if not isinstance(when, Mapping):
            raise RuleError(f"{where}.when: expected a mapping of payload field to value")
        attach = raw.get("attach") or []
        if not isinstance(attach, list) or not set(attach) <= ATTACHMENTS:
            raise RuleError(f"{where}.attach: expected a list of {sorted(ATTACHMENTS)}")
        if attach and channel is not Channel.EMAIL:
            raise RuleError(f"{where}.attach: only e-mails carry attachments")
        rules.append(
            Rule(
                event_type=raw["event"],
                channel=channel,
                template=raw["template"],
                category=category,
                groups=frozenset(groups),
                when=dict(when),
                opt_in=bool(raw.get("opt_in", False)),
                attach=tuple(attach),
            )
        )
    return RuleBook(tuple(rules))
