"""YAML (and JSON) documents as operators write them, with the line of every path.

Services read operator documents (rating's catalogs, dunning's policies) whose domain
parsers take a plain mapping and name each problem by a path into it
(``plans[0].versions[1].rates[2].first_increment``). This loader keeps the way back
from that path to the line an operator must fix: the YAML node tree is walked once,
recording the line of every path. Floats are kept as their text (``0.10`` stays
"0.10"), because the domains refuse inexact binary floats. JSON is read by the same
loader (JSON is YAML), so JSON documents get lines too. Aliases that expand to
millions of values ("billion laughs") and nesting deep enough to exhaust the parser
are refused as syntax errors, never a hang or a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from services.common.errors import FieldViolation

# Values (scalars, lists, mappings) once aliases are expanded: far above what 8 MiB of
# catalog without aliases holds, far below what an alias bomb expands to.
MAX_DOCUMENT_VALUES = 5_000_000


class _ExactLoader(yaml.SafeLoader):
    """SafeLoader that leaves floats as text so no price passes through binary floats."""


def _float_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return str(value)


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _float_as_text)


@dataclass
class LoadedDocument:
    """A parsed document and the line where each path of it starts."""

    content: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """Line of ``path``, or of its nearest ancestor present in the document."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        head = path.split("[", 1)[0]
        return self.lines.get(head)


class DocumentSyntaxError(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def looks_like_json(text: str, name: str = "") -> bool:
    """A JSON document: named ``*.json`` or starting like one (``{`` or ``[``)."""
    return name.lower().endswith(".json") or text.lstrip("\ufeff \t\r\n").startswith(("{", "["))


def _tabs_outside_strings_to_spaces(text: str) -> str:
    """JSON allows tabs as whitespace between tokens, YAML (which reads our JSON) does not.

    A tab between tokens becomes a space (same meaning, same line numbers); a tab
    inside a quoted string is left alone, so a string never changes (JSON forbids raw
    tabs in strings anyway, and the YAML reader then reports it as before).
    """
    if "\t" not in text:
        return text
    out = []
    quote = ""
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "\t":
            char = " "
        out.append(char)
    return "".join(out)


def load_document(text: str, *, json_document: bool = False) -> LoadedDocument:
    """Parse YAML (or JSON) text into plain data plus a path -> line index.

    JSON is recognised by ``json_document`` (the declared format) or by its text, so
    a JSON document reads the same whatever format its sender declared.
    """
    if json_document or looks_like_json(text):
        text = _tabs_outside_strings_to_spaces(text)
    try:
        return _load(text)
    except RecursionError:
        # "[[[[..." thousands deep exhausts the parser's stack: refuse, do not crash.
        raise DocumentSyntaxError(None, "not valid YAML/JSON: nested too deeply") from None


def _load(text: str) -> LoadedDocument:
    try:
        node = yaml.compose(text, Loader=_ExactLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DocumentSyntaxError(line, f"not valid YAML/JSON: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise DocumentSyntaxError(None, f"not valid YAML/JSON: {exc}") from None
    if node is None:
        return LoadedDocument({}, {})
    if _expanded_size(node, {}) > MAX_DOCUMENT_VALUES:
        # Aliases of aliases ("billion laughs") expand to more values than any
        # catalog has; walking them would hang the service.
        raise DocumentSyntaxError(
            None, f"expands to more than {MAX_DOCUMENT_VALUES:,} values (YAML aliases?)"
        )
    loader = _ExactLoader("")
    try:
        content = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise DocumentSyntaxError(
            mark.line + 1 if mark is not None else None, f"cannot read value: {exc.problem}"
        ) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _index(node, "", lines, set())
    return LoadedDocument(content, lines)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the document holds once every alias is expanded (an alias is
    the very node of its anchor, so each node is sized once)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, sizes) + _expanded_size(value_node, sizes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, sizes)
    sizes[id(node)] = size
    return size


def _index(node: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    if path:
        lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return  # an alias: paths inside it take the line of the alias (nearest ancestor)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, f"{path}[{index}]", lines, seen)


def with_lines(
    violations: list[FieldViolation], document: LoadedDocument, *, prefix: str = "document"
) -> list[FieldViolation]:
    """Violations whose field is ``document.<path>`` and whose text starts with the line."""
    located = []
    for violation in violations:
        line = document.line_of(violation.field)
        where = f"line {line}: " if line is not None else ""
        located.append(
            FieldViolation(f"{prefix}.{violation.field}", f"{where}{violation.description}")
        )
    return located


def as_mapping(content: Any) -> Mapping[str, object] | None:
    return content if isinstance(content, Mapping) else None
