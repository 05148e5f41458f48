"""Keeping the cyclic garbage collector out of a serving process's way.

A service allocates short-lived objects per request or per record (protos,
coroutines, rows, event items) that die young without cycles, next to a large heap
that lives for good once the process is built (imports, settings, scripts, a
compiled catalog). At CPython's default young-generation threshold (700
allocations) the collector ran ~120 times a second in charging under load (25-85 us
of CPU per request, ADR 0012) and cost rating's import ~10 us of held GIL per CDR
(ADR 0013), walking long-lived objects again and again. One policy for every
service, applied once the process is built.
"""

from __future__ import annotations

import gc

# Allocations between collections of the youngest generation (CPython's default is 700).
YOUNG_THRESHOLD = 20_000


def settle_heap(*, release_unreachable: bool = False) -> None:
    """Freeze what is alive now (never scanned again) and collect the young less often.

    ``release_unreachable`` first unfreezes and collects, so that long-lived objects
    dropped since the last call (a tariff evicted from a cache) are freed before
    the survivors are frozen again.
    """
    if release_unreachable:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
