"""Model threads below the event loop, a frozen heap after loads, glibc's allocator tuned."""

from __future__ import annotations

import gc
import os
import platform

import httpx

from service import heap
from service.priority import TASKS


def test_model_threads_run_below_the_event_loop_and_the_heap_is_frozen(serving, sample_jpeg):
    assert httpx.post(f"{serving.rest_url}/predict", content=sample_jpeg,
                      headers={"content-type": "image/jpeg"}, timeout=30).status_code == 200
    base = os.getpriority(os.PRIO_PROCESS, 0)
    names = {int(t.name): (t / "comm").read_text().strip() for t in TASKS.iterdir()}
    compute = [tid for tid, name in names.items() if name.startswith("tf_")]
    assert compute, names
    for tid in compute:
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + serving.settings.inference_nice)
    assert os.getpriority(os.PRIO_PROCESS, serving._thread.native_id) == base
    assert gc.get_freeze_count() > 100_000  # TensorFlow and the model are out of the collector's scans
    assert gc.get_threshold()[2] == heap.FULL_COLLECTION_EVERY  # full collections rarer under load


def test_malloc_is_tuned_on_glibc():
    if platform.libc_ver()[0] != "glibc":
        assert heap.tune_malloc() is False
    else:
        assert heap.tune_malloc() is True
