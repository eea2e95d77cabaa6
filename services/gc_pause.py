"""Python's cyclic garbage collector kept out of a projection step.

A step of catch-up reads a page of up to 20,000 facts and builds, per fact, a properties
dict, a row tuple and the projections' cells: a few hundred thousand containers that live
as long as the step. The collector, triggered every 700 allocations, walks them again and
again as they age (and every full collection walks the whole heap), and measured about a
fifth of the worker's time on a dense day and a third on a sparse week (2 and 5 µs of
10 to 17 per fact; ``bench/projections.py`` 1b). Nothing a step builds needs the collector
(reference counting frees it when the step ends; the step makes no reference cycles that
matter), so drivers run each step with automatic collection off and turn it back on
after: collections then happen between steps, when the page is already freed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """Automatic garbage collection off for the block, and back on after it (even when
    the block raises). Only the caller that turned it off turns it back on: nested or
    concurrent blocks, or a process that disabled it itself, leave it as they found it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
