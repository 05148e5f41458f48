"""``reckon --version``: the installed version and the gRPC contracts it carries.

The contracts' Python stubs are generated at build time (ADR 0040); an install
without them could start nothing, so ``--version`` names them, and fails when
none is importable.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import typer

CONTRACTS_PACKAGE = "reckon"


def installed_version() -> str:
    try:
        return importlib.metadata.version("reckon")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0+unknown"


def contracts() -> list[str]:
    """``accounts.v1``, ``rating.v1``...: every generated contract package that imports."""
    package = importlib.import_module(CONTRACTS_PACKAGE)
    found = []
    for service in pkgutil.iter_modules(package.__path__):
        if not service.ispkg:
            continue
        sub = importlib.import_module(f"{CONTRACTS_PACKAGE}.{service.name}")
        for version in pkgutil.iter_modules(sub.__path__):
            module = f"{CONTRACTS_PACKAGE}.{service.name}.{version.name}.{service.name}_pb2_grpc"
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            found.append(f"{service.name}.{version.name}")
    return sorted(found)


def print_version(value: bool) -> None:
    """Typer callback of ``--version``: print and exit."""
    if not value:
        return
    found = contracts()
    if not found:
        typer.echo(
            f"reckon {installed_version()}: no generated gRPC stubs in the `reckon` package "
            "(from a source tree run `make protos`; a wheel carries them)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"reckon {installed_version()} (contracts: {', '.join(found)})")
    raise typer.Exit(0)
