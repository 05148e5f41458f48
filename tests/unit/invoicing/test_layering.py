"""The domain and the service layer stay free of transports and storage (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[3] / "services" / "invoicing"
FORBIDDEN = ("grpc", "google.protobuf", "reckon", "sqlalchemy", "redis", "alembic")


@pytest.mark.parametrize("layer", ["domain", "service_layer"])
def test_layer_imports_no_transport_or_storage(layer: str) -> None:
    offenders = []
    for path in sorted((SERVICE / layer).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN or n in FORBIDDEN
            ]
    assert offenders == []
