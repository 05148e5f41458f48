"""CPU time of processes, to tell which side of a benchmark was the bottleneck.

A server at ~100% of one core is saturated (CPython runs one event loop on one
core); a client near 100% means the figure measures the load generator too.
Linux only (``/proc``); elsewhere the figures are simply missing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_ns(pid: int | None = None) -> int | None:
    """User + system CPU time of ``pid`` (all threads), or of this process when None."""
    if pid is None or pid == os.getpid():
        return time.process_time_ns()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // _TICKS


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (of every thread of it), from ``/proc``."""
    kids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            kids += [int(kid) for kid in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def process_tree_cpu_ns(pid: int | None = None) -> int | None:
    """CPU of ``pid`` and of all its live descendants (a server that forks workers:
    its own figure alone would leave the workers' CPU out). A descendant that ended
    between two readings takes its CPU with it: fine for servers whose workers live
    as long as the measurement."""
    if pid is None:
        pid = os.getpid()
    total = process_cpu_ns(pid)
    if total is None:
        return None
    pending = _children(pid)
    while pending:
        child = pending.pop()
        total += process_cpu_ns(child) or 0
        pending += _children(child)
    return total


def machine_busy_ns() -> int | None:
    """CPU time all processes on the machine have used (all cores), steal included."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8) if i < len(fields))
    return busy * 1_000_000_000 // _TICKS


@dataclass
class MachineMeter:
    """CPU the rest of the machine used meanwhile: all busy time minus ``own`` processes.

    On a shared machine this says how much a neighbour took while a figure was
    measured (as % of one core; steal time counts as taken).
    """

    own_pids: tuple[int, ...] = ()
    tree: bool = False  # count each own process's descendants as own too
    _busy0: int | None = None
    _own0: list[int | None] | None = None
    _wall0: int = 0
    percent: float | None = None

    def _own(self) -> list[int | None]:
        of = process_tree_cpu_ns if self.tree else process_cpu_ns
        return [process_cpu_ns(None), *(of(pid) for pid in self.own_pids)]

    def start(self) -> None:
        self._busy0 = machine_busy_ns()
        self._own0 = self._own()
        self._wall0 = time.perf_counter_ns()

    def stop(self) -> float | None:
        busy1, own1 = machine_busy_ns(), self._own()
        wall = time.perf_counter_ns() - self._wall0
        own0 = self._own0 or []
        if self._busy0 is None or busy1 is None or wall <= 0 or None in own0 or None in own1:
            self.percent = None
            return None
        own = sum(b - a for a, b in zip(own0, own1, strict=True) if a is not None and b is not None)
        self.percent = max(0.0, 100 * (busy1 - self._busy0 - own) / wall)
        return self.percent


@dataclass
class CpuMeter:
    """CPU used by one process (with ``tree``: and its descendants) between
    ``start()`` and ``stop()``, as % of one core."""

    pid: int | None = None
    tree: bool = False
    _cpu0: int | None = None
    _wall0: int = 0
    percent: float | None = None

    def _cpu(self) -> int | None:
        if self.tree and self.pid is not None:
            return process_tree_cpu_ns(self.pid)
        return process_cpu_ns(self.pid)

    def start(self) -> None:
        self._cpu0 = self._cpu()
        self._wall0 = time.perf_counter_ns()

    def stop(self) -> float | None:
        cpu1 = self._cpu()
        wall = time.perf_counter_ns() - self._wall0
        if self._cpu0 is None or cpu1 is None or wall <= 0:
            self.percent = None
        else:
            self.percent = 100 * (cpu1 - self._cpu0) / wall
        return self.percent
