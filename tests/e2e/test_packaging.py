"""`pip install` of a wheel, without the dev extras, gives a working `reckon` (item 18).

The wheel is built from the project's files as a fresh clone has them (no generated
stubs in reckon/), installed into a new virtual environment with no dev tools, and
`reckon --version` must name every contract: the stubs came from the build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from suite.supervisor import CODE_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONTRACTS = ("accounts.v1", "charging.v1", "rating.v1")


def clean_copy(target: Path) -> Path:
    """The files git tracks (or would), without build output: what a clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=CODE_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = CODE_ROOT / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def test_a_wheel_installed_without_dev_extras_runs_reckon(tmp_path: Path) -> None:
    source = clean_copy(tmp_path / "clone")
    assert not list((source / "reckon").glob("*/v1/*_pb2.py"))  # nothing generated yet
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(dist)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("reckon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for contract in CONTRACTS:
        service = contract.split(".")[0]
        assert f"reckon/{service}/v1/{service}_pb2_grpc.py" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=400
    )
    # Run from elsewhere: nothing of the source tree may be found on the path.
    version = subprocess.run(
        [str(venv / "bin" / "reckon"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("reckon 0.1.0")
    for contract in CONTRACTS:
        assert contract in version.stdout
    no_dev_tools = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import grpc_tools"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert no_dev_tools.returncode != 0  # the stubs did not need them at run time
