"""Generate Python stubs (+ .pyi type stubs) from protos/ into the ``reckon`` package.

Everything below ``reckon/`` except its ``__init__.py`` is build output (git-ignored),
made by ``make protos``;
it is never edited by hand. Imports of google/type and google/rpc protos resolve
against the .proto files that googleapis-common-protos ships. ``make protos`` also
copies those into ``third_party/googleapis`` (git-ignored), so ``buf lint`` and
``buf generate`` work at the repository root and clients that load .proto files
(the Node.js example) find them. ``setup.py`` calls ``generate`` when a wheel is
built (ADR 0040), so an install without the dev extras has its stubs.
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


def googleapis_root() -> Path:
    """The site-packages folder holding google/type/*.proto (googleapis-common-protos)."""
    return Path(money_pb2.__file__).resolve().parent.parent.parent


def generate(root: Path, *, typed: bool = True) -> int:
    """Write ``reckon/<service>/v1/*_pb2*.py`` under ``root``; .pyi too when ``typed``."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    if not sources:
        print("no .proto files under protos/", file=sys.stderr)
        return 1
    bin_dir = Path(sys.executable).parent
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"-I{googleapis_root()}",
        f"--python_out={root}",
        f"--grpc_python_out={root}",
    ]
    if typed:
        args += [
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={root}",
            f"--mypy_grpc_out={root}",
        ]
    if protoc.main([*args, *sources]) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    out = root / "reckon"
    for folder in (p for p in out.rglob("*") if p.is_dir()):
        (folder / "__init__.py").touch()
    (out / "py.typed").touch()
    return 0


def vendor_googleapis(target: Path) -> int:
    """Copy google/type, google/rpc, google/api... .proto files into ``target``."""
    source = googleapis_root()
    copied = 0
    for proto in source.glob("google/**/*.proto"):
        relative = proto.relative_to(source)
        if relative.parts[1] == "protobuf":
            continue  # well-known types: every protobuf toolchain ships its own
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto, destination)
        copied += 1
    return copied


def main() -> int:
    # reckon/__init__.py is committed (so editable installs map the package); every
    # subfolder is build output and is made anew.
    for generated in OUT.iterdir():
        if generated.is_dir():
            shutil.rmtree(generated)
    if generate(ROOT) != 0:
        return 1
    sources = list(PROTOS.rglob("*.proto"))
    print(f"generated stubs for {len(sources)} proto files into {OUT.relative_to(ROOT)}/")
    copied = vendor_googleapis(ROOT / "third_party" / "googleapis")
    print(f"copied {copied} googleapis .proto files into third_party/googleapis/ (for buf)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
