"""Invoice documents per second per core: PDF, Factur-X, UBL and CII, beside their floors.

``python -m bench.invoicing_documents.documents_bench [--calls N] [--count N] [--repeat N]
[--workers N] [--json PATH]``

Renders the example invoice (four lines, ``--calls`` call-detail rows on the
attachment page) on one core and reports, per format, documents per CPU-second
of this process, with a floor measured in the same run on the same document:

* **html** (floor of the PDF): the Jinja2 template alone, what every PDF pays first;
* **pdf**: HTML + WeasyPrint layout + PDF/A-3b writing;
* **facturx**: pdf + the CII + facturx's embedding and XMP metadata;
* **xml tree serialise** (floor of UBL/CII): ``etree.tostring`` of a tree built once;
* **ubl** / **cii**: building the tree from the document and serialising it.

Best of ``--repeat`` runs, alternating, so a noisy neighbour shows as a lower
figure but a comparable ratio. With ``--workers N`` it also renders PDFs in N
spawned processes (the way document workers do) and reports the machine's rate.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lxml import etree
from weasyprint import HTML

from services.invoicing.documents.cii import to_cii, to_cii_bytes
from services.invoicing.documents.example import sample_invoice
from services.invoicing.documents.factur_x import render_facturx
from services.invoicing.documents.html import render_html
from services.invoicing.documents.model import InvoiceDocument
from services.invoicing.documents.pdf import render_pdf
from services.invoicing.documents.ubl import to_ubl, to_ubl_bytes


@dataclass
class Rate:
    name: str
    documents: int
    cpu_s: float
    wall_s: float

    @property
    def per_core(self) -> float:
        return self.documents / self.cpu_s if self.cpu_s else float("inf")


def _time(name: str, render: Callable[[], object], count: int) -> Rate:
    render()  # warm caches (templates, fonts, schemas) outside the measurement
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        render()
    return Rate(name, count, time.process_time() - cpu, time.perf_counter() - wall)


def _pdf_worker(calls: int, count: int) -> int:
    document = sample_invoice(calls=calls)
    for _ in range(count):
        render_pdf(document)
    return count


def _parallel_pdfs(workers: int, calls: int, count: int) -> tuple[int, float]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        pool.starmap(_pdf_worker, [(calls, 1)] * workers)  # start and warm every worker
        start = time.perf_counter()
        done = sum(pool.starmap(_pdf_worker, [(calls, count)] * workers))
        return done, time.perf_counter() - start


def run(document: InvoiceDocument, count: int, repeat: int) -> dict[str, Rate]:
    ubl_tree, cii_tree = to_ubl(document), to_cii(document)
    xml_count = count * 50  # XML is ~100x cheaper than a PDF: more rounds, same accuracy
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("html (PDF floor)", lambda: render_html(document), count * 5),
        ("pdf", lambda: render_pdf(document), count),
        ("facturx", lambda: render_facturx(document), count),
        ("ubl tree serialise (floor)", lambda: etree.tostring(ubl_tree), xml_count),
        ("ubl", lambda: to_ubl_bytes(document), xml_count),
        ("cii tree serialise (floor)", lambda: etree.tostring(cii_tree), xml_count),
        ("cii", lambda: to_cii_bytes(document), xml_count),
    ]
    best: dict[str, Rate] = {}
    for _ in range(repeat):
        for name, render, n in cases:
            rate = _time(name, render, n)
            if name not in best or rate.per_core > best[name].per_core:
                best[name] = rate
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="call-detail rows on the invoice")
    parser.add_argument("--count", type=int, default=20, help="PDFs per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="also render PDFs in N processes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    document = sample_invoice(calls=args.calls)
    pages = len(HTML(string=render_html(document)).render().pages)
    print(f"document: {len(document.lines)} lines, {args.calls} call rows; PDF pages: {pages}")
    best = run(document, args.count, args.repeat)
    print(f"{'format':<28} {'docs/s per core':>16} {'ms per doc':>11} {'vs floor':>9}")
    floors = {"pdf": "html (PDF floor)", "facturx": "html (PDF floor)"}
    floors |= {"ubl": "ubl tree serialise (floor)", "cii": "cii tree serialise (floor)"}
    for name, rate in best.items():
        floor = best.get(floors.get(name, ""))
        ratio = f"{rate.per_core / floor.per_core:9.3f}" if floor else f"{'':>9}"
        print(f"{name:<28} {rate.per_core:16.1f} {1000 / rate.per_core:11.2f} {ratio}")
    result: dict[str, object] = {
        "python": platform.python_version(),
        "calls": args.calls,
        "rates": {name: asdict(rate) | {"per_core": rate.per_core} for name, rate in best.items()},
    }
    if args.workers:
        done, wall = _parallel_pdfs(args.workers, args.calls, args.count)
        print(f"pdf with {args.workers} worker processes: {done / wall:.1f} docs/s (machine)")
        result["parallel_pdf"] = {"workers": args.workers, "per_s": done / wall}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
