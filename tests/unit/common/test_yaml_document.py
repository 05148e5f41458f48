"""The kit's YAML loader: exact floats, a line for every path, bombs refused; and no
service reaches into another service's code for it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.common.errors import FieldViolation
from services.common.yaml_document import DocumentSyntaxError, load_document, with_lines

SERVICES = Path(__file__).resolve().parents[3] / "services"


def test_floats_stay_text_and_every_path_has_its_line() -> None:
    loaded = load_document("levels:\n  - name: first\n    fee: 0.10\n")
    assert loaded.content == {"levels": [{"name": "first", "fee": "0.10"}]}
    assert loaded.line_of("levels[0].fee") == 3
    assert loaded.line_of("levels[0].missing.deeper") == 2  # nearest ancestor
    located = with_lines([FieldViolation("levels[0].fee", "must be positive")], loaded)
    assert located == [FieldViolation("document.levels[0].fee", "line 3: must be positive")]


def test_alias_bomb_and_bad_syntax_are_refused_with_a_line() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)
    )
    with pytest.raises(DocumentSyntaxError, match="expands to more than"):
        load_document(bomb)
    with pytest.raises(DocumentSyntaxError) as caught:
        load_document("levels:\n  - name: [unclosed\n")
    assert caught.value.line is not None


def test_dunning_and_rating_import_no_other_service() -> None:
    """Services share code only through services/common (ARCHITECTURE.md)."""
    for service in ("dunning", "rating"):
        for path in (SERVICES / service).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "services" and len(parts) > 1:
                        assert parts[1] in (service, "common"), f"{path}: {node.module}"
