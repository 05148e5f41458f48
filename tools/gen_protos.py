"""Generate Python stubs (+ .pyi type stubs) from protos/ into the ``reckon`` package.

Everything below ``reckon/`` except its ``__init__.py`` is build output (git-ignored),
made by ``make protos``;
it is never edited by hand. Imports of google/type and google/rpc protos resolve
against the .proto files that googleapis-common-protos ships.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from google.type import money_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "reckon"


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    if not sources:
        print("no .proto files under protos/", file=sys.stderr)
        return 1
    # reckon/__init__.py is committed (so editable installs map the package); every
    # subfolder is build output and is made anew.
    for generated in OUT.iterdir():
        if generated.is_dir():
            shutil.rmtree(generated)
    bin_dir = Path(sys.executable).parent
    well_known = str(resources.files("grpc_tools") / "_proto")
    # site-packages root holding google/type/*.proto from googleapis-common-protos
    googleapis = str(Path(money_pb2.__file__).resolve().parent.parent.parent)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"-I{googleapis}",
        f"--python_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={ROOT}",
        f"--mypy_grpc_out={ROOT}",
        *sources,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for folder in (p for p in OUT.rglob("*") if p.is_dir()):
        (folder / "__init__.py").touch()
    (OUT / "py.typed").touch()
    print(f"generated stubs for {len(sources)} proto files into {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
