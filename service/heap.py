"""Memory policy: the allocator must not grow under load, and a full collection must not stall the loop."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time

log = logging.getLogger(__name__)


# glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20) -> bool:
    """Call before the runtime starts its threads. Under a mix of batch sizes, glibc's defaults let
    RSS creep up for minutes (+15% over 5 minutes at 3x capacity): every thread gets an arena of
    its own (up to 8 per core), and after the first free of a large block the mmap threshold rises
    to that size, so the model's per-batch buffers (1-32 MB) land in arenas that never shrink.
    Two arenas and a fixed 1 MB threshold (big buffers mapped and unmapped per call) keep it flat.
    Returns False where the C library is not glibc (nothing to tune)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))


# Full collections every 100 middle-generation ones instead of Python's 10. Under overload,
# accepted requests wait ~1 s in the queue, so their objects outlive the young generations and
# reach the old one, where they trigger a full collection every ~3.5 s; each held the GIL for
# 17-33 ms (measured with gc.callbacks), and every request arriving then waited for it: with 10,
# refusals' p99 at 3x capacity was 21-24 ms; with 100, 10.8 ms. Their objects are still freed by
# reference counting as they die; only cycles wait for the rarer collections.
FULL_COLLECTION_EVERY = 100


def freeze() -> None:
    """Move every object alive now (TensorFlow, the loaded models: ~400k objects) out of the
    collector's sight. A full collection otherwise scans them all, which holds the GIL and so
    stalls the event loop for ~0.4 s every few seconds under load: the p99 of even the cheapest
    answer. Objects made later (requests) are collected as usual, full collections more rarely."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def collect_and_freeze(when: str = "after an unload") -> None:
    """After a version is unloaded: its objects were frozen, so cycles among them would never be
    freed. One full collection (a single pause per unload), then freeze the survivors again.
    Also once at start-up, before traffic (`when` says which, in the log)."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    log.info("full collection %s: %d objects freed in %.0f ms", when, freed,
             1000 * (time.perf_counter() - started))
