"""What `reckon demo`'s billing story must show, and the one trace it must leave.

Helpers of ``tests/e2e/test_suite.py`` (which starts the suite once, on the test
clock, and plays the demo once): issue 10 item 9, issue 11 item 9, issue 12 item 7.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from suite.trace_receiver import ReceivedSpan, read_spans

ROOT = "reckon.demo story"
# (service, span name): every hop of the story from the CDR import to the e-mail.
HOPS: list[tuple[str, str]] = [
    ("reckon-rating", "reckon.rating.import"),
    ("reckon-invoicing", "reckon.event.consume UsageRated"),
    ("reckon-invoicing", "reckon.invoicing daily bill run after a clock move"),
    ("reckon-invoicing", "reckon.event.consume BillRunWork"),
    ("reckon-invoicing", "reckon.event.publish InvoiceIssued"),
    ("reckon-payments", "reckon.event.consume InvoiceIssued"),
    ("reckon-notifications", "reckon.event.consume InvoiceIssued"),
    ("reckon-payments", "reckon.payments.provider charge"),
    ("reckon-payments", "reckon.event.publish PaymentSucceeded"),
    ("reckon-notifications", "reckon.event.consume PaymentSucceeded"),
    ("reckon-notifications", "reckon.notifications.send EMAIL"),
]
TRACE_WAIT_SECONDS = 20.0


def check_billing_story(output: str) -> None:
    """The invoice at the cycle end, its documents, the payment, the e-mails, the retries."""
    invoice = re.search(r"invoice (INV-\d{4}-\d{6}) by bill run (run_\w+)", output)
    assert invoice, output
    number = invoice.group(1)
    # The customer's own price package: the rated legs became invoice lines.
    assert re.search(r"voice \+31 20 555 0101 .*SEC", output)
    assert re.search(r"net \d+\.\d\d EUR \+ VAT \d+\.\d\d EUR = \d+\.\d\d EUR", output)
    starts = {".pdf": b"%PDF", ".ubl.xml": b"<?xml"}
    for suffix, start in starts.items():
        found = re.search(rf"(/\S+/invoices/{number}{re.escape(suffix)})", output)
        assert found, f"no {suffix} path in the output"
        assert Path(found.group(1)).read_bytes().startswith(start)
    assert f"invoice {number} is PAID" in output
    # The two e-mails as the mail catcher received them: the PDF attached to the first.
    assert f"Subject  Invoice {number} from Reckon" in output
    assert f"{number}.pdf (" in output
    assert "Subject  Payment received:" in output
    assert f"Invoice {number} is paid." in output
    # The declining card: four soft declines on the test clock, the last try succeeds.
    assert output.count("declined processing_error") == 4
    assert re.search(r"│ 5\s+│ \d{4}-\d\d-\d\d \d\d:\d\d │ SUCCEEDED", output)
    assert "the last try succeeded" in output


def _ancestors_reach_root(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    seen = set()
    while span.parent_span_id and span.parent_span_id not in seen:
        seen.add(span.parent_span_id)
        parent = by_id.get(span.parent_span_id)
        if parent is None:
            return False
        span = parent
    return span.name == ROOT


def check_one_trace(traces_file: Path, trace_id: str) -> None:
    """Every hop is in the story's trace, each a descendant of the story's root span."""
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), trace_id
    deadline = time.monotonic() + TRACE_WAIT_SECONDS
    while True:
        spans = list(read_spans(traces_file, trace_id))
        by_id = {span.span_id: span for span in spans}
        missing = [
            hop
            for hop in HOPS
            if not any(
                (span.service, span.name) == hop and _ancestors_reach_root(span, by_id)
                for span in spans
            )
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"hops missing from trace {trace_id}: {missing}"
    # The e-mail about the invoice and the confirmation are both sent in this trace.
    sends = [s for s in spans if s.name == "reckon.notifications.send EMAIL"]
    assert len(sends) >= 2
