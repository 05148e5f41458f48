"""Build hook: a wheel carries the generated gRPC stubs of every contract (ADR 0040).

``pip install .`` (or building a wheel) runs ``tools/gen_protos.generate`` with
grpcio-tools from the build requirements, writing ``reckon/<service>/v1/*_pb2*.py``
into the build directory. Editable installs (``make setup``) skip it: there
``make protos`` generates into the source tree. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path.insert(0, str(HERE))
        from tools.gen_protos import generate

        typed = True
        try:
            import mypy_protobuf  # noqa: F401  (optional: .pyi stubs when present)
        except ImportError:
            typed = False
        if generate(Path(self.build_lib), typed=typed) != 0:
            raise SystemExit("generating the gRPC stubs failed")


setup(cmdclass={"build_py": BuildWithStubs})
