"""`buf lint` and `buf generate` work at the repository root after `make setup` (item 18).

`make setup` installs buf (tools/buf.sh setup) and copies the googleapis .proto
files buf.yaml names into third_party/googleapis; buf.gen.yaml generates Python
and gRPC stubs with a local plugin (tools/protoc_gen_reckon.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from suite.supervisor import CODE_ROOT

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not shutil.which("npm") and not os.environ.get("CI"),
        reason="npm absent on this machine (CI has it: tools/ensure_services.sh)",
    ),
]
BUF = CODE_ROOT / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    subprocess.run(["bash", "tools/buf.sh", "setup"], cwd=CODE_ROOT, check=True, timeout=240)
    assert BUF.exists(), "make setup must install buf"
    assert (CODE_ROOT / "third_party" / "googleapis" / "google" / "type" / "money.proto").exists()
    return BUF


def test_buf_lint_at_the_repository_root(buf: Path) -> None:
    run = subprocess.run(
        [str(buf), "lint"], cwd=CODE_ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_buf_generate_at_the_repository_root(buf: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(buf), "generate", "--output", str(tmp_path)],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    generated = tmp_path / "gen" / "python" / "reckon"
    for service in ("accounts", "rating", "charging"):
        stub = generated / service / "v1" / f"{service}_pb2_grpc.py"
        assert stub.exists(), sorted(p.name for p in generated.rglob("*.py"))
        assert f"class {service.capitalize()}ServiceStub" in stub.read_text()
