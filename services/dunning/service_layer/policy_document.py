"""Policy documents as operators write them (YAML or JSON), problems named by line and field.

The one path from text to a validated ``Policy``: ``ApplyPolicy``/``CheckPolicy`` and the
offline ``reckon dunning check`` all call ``read_policy``, so they accept the same
documents and report the same problems. The YAML reader with a line for every path is
the kit's (``services.common.yaml_document``, shared with rating's catalogs: floats kept
as written, alias bombs refused).
"""

from __future__ import annotations

from services.common.errors import FieldViolation, InvalidArgument
from services.common.yaml_document import DocumentSyntaxError, load_document, with_lines
from services.dunning.domain.policy import Policy, parse_policy

MAX_POLICY_BYTES = 256 * 1024


def read_policy(text: str, *, version: int = 1) -> Policy:
    """The policy in ``text``; InvalidArgument with ``document.<path>`` fields, each
    description starting ``line N:``."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise InvalidArgument.field("document", f"larger than {MAX_POLICY_BYTES} bytes")
    try:
        loaded = load_document(text)
    except DocumentSyntaxError as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise InvalidArgument.field("document", f"{where}{exc.message}") from None
    try:
        return parse_policy(loaded.content, version=version)
    except InvalidArgument as exc:
        located = with_lines(list(exc.violations), loaded)
        raise InvalidArgument(located, "the dunning policy is not valid") from None


def problems_of(text: str) -> list[FieldViolation]:
    """Every problem of the document (empty when it is a valid policy)."""
    try:
        read_policy(text)
    except InvalidArgument as exc:
        return list(exc.violations)
    return []
