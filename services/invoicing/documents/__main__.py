"""Operator commands for invoice documents.

    python -m services.invoicing.documents validate FILE...   # UBL/CII XML or Factur-X PDF
    python -m services.invoicing.documents sample -o DIR [--language nl] [--group budgetcall]

``validate`` checks each file against the official XSDs and the EN 16931
Schematron rules and exits 1 when any has an error. ``sample`` writes the example
invoice and credit note in every format, to look at a template change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.invoicing.documents.example import sample_credit_note, sample_invoice
from services.invoicing.documents.render import DocumentFormat, render
from services.invoicing.documents.validation import SchematronWorker, validate


def embedded_xml(pdf: bytes) -> bytes:
    """The factur-x.xml of a Factur-X PDF (raises when there is none)."""
    from facturx import get_xml_from_pdf

    _, xml = get_xml_from_pdf(pdf, check_xsd=False)
    if not xml:
        raise ValueError("the PDF has no embedded factur-x.xml")
    return bytes(xml)


def _validate(files: list[Path]) -> int:
    failed = 0
    with SchematronWorker() as worker:
        for path in files:
            content = path.read_bytes()
            try:
                xml = embedded_xml(content) if content.startswith(b"%PDF") else content
                report = validate(xml, worker)
            except Exception as error:  # noqa: BLE001 - one bad file must not hide the others
                print(f"{path}: cannot validate: {error}")
                failed += 1
                continue
            print(f"{path}: {report.summary()}")
            failed += 0 if report.ok else 1
    return 1 if failed else 0


def _sample(directory: Path, language: str, group: str | None) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for document in (sample_invoice(language, group), sample_credit_note(language, group)):
        for document_format in DocumentFormat:
            rendered = render(document, document_format)
            target = directory / rendered.filename
            target.write_bytes(rendered.content)
            print(target)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.invoicing.documents")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="XSD + EN 16931 Schematron check of e-invoices")
    check.add_argument("files", nargs="+", type=Path)
    sample = commands.add_parser("sample", help="write the example documents in every format")
    sample.add_argument("-o", "--output", type=Path, required=True)
    sample.add_argument("--language", default="en")
    sample.add_argument("--group", default=None)
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.files)
    return _sample(args.output, args.language, args.group)


if __name__ == "__main__":
    sys.exit(main())
