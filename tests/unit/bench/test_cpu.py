"""The benchmarks' CPU meter counts a server's worker processes when asked to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.common.cpu import CpuMeter, process_cpu_ns, process_tree_cpu_ns

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")

# A parent that only waits for a child that burns CPU: the parent's own figure stays
# near zero, the tree's is the child's.
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
PARENT = (
    "import subprocess, sys\n"
    f"subprocess.run([sys.executable, '-c', {BURN!r} + 'import time; time.sleep(5)'])\n"
)


def test_tree_counts_live_descendants() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    try:
        meter = CpuMeter(parent.pid, tree=True)
        meter.start()
        time.sleep(2.0)
        meter.stop()
        own, tree = process_cpu_ns(parent.pid), process_tree_cpu_ns(parent.pid)
        assert own is not None
        assert tree is not None
        assert tree - own >= 500_000_000
        assert meter.percent is not None
        assert meter.percent >= 20
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child too: it is in the group
        parent.wait()
