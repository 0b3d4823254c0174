"""The garbage collector set up for serving, in server processes and their append processes.

Imports nothing but :mod:`gc`, so that the append process (``python -m api.append_process``)
can use it without loading the web framework.
"""

from __future__ import annotations

import gc

# Generation-0 collections after this many net allocations, instead of Python's 700: a check allocates
# a few hundred short-lived objects, none of them cyclic, and each collection walks every young object
# (bench/check_http.py: about 10 % more checks per second, with the same p99).
SERVING_GC_THRESHOLD = 10_000


def prepare_gc_for_serving() -> None:
    """Set the garbage collector up for serving: start-up objects frozen, young collections rarer.

    Everything alive after start-up (the check index above all, and the modules, tables and
    caches every process loads) moves out of the collector's sight: it lives as long as the
    process and none of it is ever cyclic garbage, yet a full collection walks every tracked
    object: ~80 ms per 100,000 subjects of index in a server, and 50-70 ms in an append
    process, whose full collections stalled every check waiting on its commit (bench/check_http.py:
    a p99 of 15-32 ms, and one answer in a few thousand taking 80 ms). Then generation 0 is
    collected every :data:`SERVING_GC_THRESHOLD` allocations. Called once, when a server
    process or an append process is about to serve.
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD, gen1, gen2)
