"""Process-wide settings for the long-running roles (gateway, worker), applied by the composition
root once the process has started, never by a library.

Garbage collection: a serving process allocates many short-lived objects per request (futures,
messages, generators). CPython's default thresholds run a young collection every 700 allocations
and periodically a full one that walks every object ever imported; measured on the gateway this
was a quarter of its CPU per job (bench/load_bench.py, docs/benchmarks.md). After start-up the
long-lived objects are frozen out of the collector's view (gc.freeze), and collections run less
often: cycles are still collected, just in larger batches.
"""

from __future__ import annotations

import gc

GC_YOUNG_ALLOCATIONS = 50_000  # allocations between young collections (CPython default 700)
GC_OLDER_RATIO = 20  # young collections per middle one, middle per full one (default 10, 10)


def tune_gc_for_serving() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, GC_OLDER_RATIO, GC_OLDER_RATIO)
