"""Jinja2 templates per language, read from one YAML file per language.

``<dir>/<lang>.yaml`` maps a template name to its parts: ``subject``, ``text``
and ``html`` for e-mail, ``sms`` for SMS. A template missing in the customer's
language falls back to English. Undefined variables are errors (StrictUndefined),
so a template that does not fit its event fails the message with the reason
instead of sending a half-empty text. Files are re-read when they change: an
operator fixes a template and retries the failed messages without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from services.common.money import MoneyError, currency_exponent, is_known_currency, to_decimal
from services.notifications.domain.model import DEFAULT_LANGUAGE, LANGUAGES
from services.notifications.service_layer.ports import RenderedEmail, TemplateProblem

DEFAULT_DIR = Path(__file__).parent / "templates"
_EMAIL_PARTS = ("subject", "text", "html")


def money(value: Any) -> str:
    """``{"amount": "12.3", "currency": "EUR"}`` as ``12.30 EUR``: at least the currency's
    minor digits, more only where the amount has them (``0.4625 EUR``), never rounded and
    never a float. Events carry amounts as their producers wrote them (``12.1``,
    ``0.460000``), so the one format lives here."""
    if not (isinstance(value, Mapping) and "amount" in value):
        return str(value)
    currency = str(value.get("currency", ""))
    try:
        amount = to_decimal(str(value["amount"]))
    except (MoneyError, ValueError, ArithmeticError):
        return f"{value['amount']} {currency}".strip()
    places = currency_exponent(currency) if is_known_currency(currency) else 0
    exponent = amount.normalize().as_tuple().exponent
    needed = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    shown = amount.quantize(Decimal(1).scaleb(-max(places, needed)))
    return f"{shown:f} {currency}".strip()


def _environment(autoescape: bool) -> Environment:
    # Sandboxed: templates are operators' configuration and must not reach Python.
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape)
    env.filters["money"] = money
    return env


class JinjaRenderer:
    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[float, dict[str, Any]]] = {}
        self._text = _environment(False)
        self._html = _environment(True)
        self._compiled_cache: dict[tuple[int, str], Template] = {}

    def _catalog(self, language: str) -> dict[str, Any]:
        path = self._dir / f"{language}.yaml"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._loaded.get(language)
            if cached and cached[0] == mtime:
                return cached[1]
            try:
                document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise TemplateProblem(f"{path.name} is not valid YAML: {exc}") from exc
            if not isinstance(document, dict):
                raise TemplateProblem(f"{path.name}: expected a mapping of template names")
            self._loaded[language] = (mtime, document)
            return document

    def _parts(
        self, template: str, language: str, needed: tuple[str, ...]
    ) -> tuple[str, dict[str, str]]:
        """The template's parts and the language they are in (English as the fallback)."""
        for candidate in dict.fromkeys((language, DEFAULT_LANGUAGE)):
            parts = self._catalog(candidate).get(template)
            if isinstance(parts, dict) and all(isinstance(parts.get(p), str) for p in needed):
                return candidate, parts
        raise TemplateProblem(f"unknown template {template!r} (parts {', '.join(needed)})")

    def has(self, template: str, channel: str) -> bool:
        needed = ("sms",) if channel == "SMS" else _EMAIL_PARTS
        try:
            self._parts(template, DEFAULT_LANGUAGE, needed)
        except TemplateProblem:
            return False
        return True

    def _compiled(self, env: Environment, source: str) -> Template:
        # Compiling is most of a render's cost; sources change only when files do.
        key = (id(env), source)
        template = self._compiled_cache.get(key)
        if template is None:
            template = env.from_string(source)
            if len(self._compiled_cache) > 1000:
                self._compiled_cache.clear()
            self._compiled_cache[key] = template
        return template

    def _render(self, env: Environment, source: str, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self._compiled(env, source).render(**context)
        except TemplateError as exc:
            raise TemplateProblem(f"template {name} failed to render: {exc}") from exc
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise TemplateProblem(f"template {name} failed to render: {exc!r}") from exc

    def email(self, template: str, language: str, context: Mapping[str, Any]) -> RenderedEmail:
        language, parts = self._parts(template, language, _EMAIL_PARTS)
        subject = self._render(self._text, parts["subject"], f"{template}.subject", context)
        return RenderedEmail(
            subject=" ".join(subject.split()),  # one line: a header cannot hold newlines
            text=self._render(self._text, parts["text"], f"{template}.text", context),
            html=_LAYOUT.format(
                lang=language,
                body=self._render(self._html, parts["html"], f"{template}.html", context),
            ),
        )

    def sms(self, template: str, language: str, context: Mapping[str, Any]) -> str:
        _, parts = self._parts(template, language, ("sms",))
        return self._render(self._text, parts["sms"], f"{template}.sms", context).strip()


_LAYOUT = (
    '<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"></head>'
    '<body style="font-family: sans-serif">\n{body}</body></html>\n'
)

__all__ = ["DEFAULT_DIR", "LANGUAGES", "JinjaRenderer", "money"]
