"""Thread priorities: model work yields the CPU at once to the event loop that answers clients."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)
TASKS = Path("/proc/self/task")
# TensorFlow names its own pools (tf_Compute, tf_graph_runner, ...); they do the model's arithmetic
COMPUTE_PREFIXES = ("tf_",)


def _lower(tid: int, niceness: int) -> None:
    # nice is per thread on Linux; an unprivileged process may raise it but never lower it again
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    if os.getpriority(os.PRIO_PROCESS, tid) < target:
        os.setpriority(os.PRIO_PROCESS, tid, target)


def lower_this_thread(niceness: int) -> None:
    """For a thread pool's initializer: this thread, and every thread it starts, runs at lower priority."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        _lower(threading.get_native_id(), niceness)
    except OSError as exc:  # a sandbox that forbids it: run at normal priority
        log.debug("cannot lower this thread's priority: %s", exc)


def lower_compute_threads(niceness: int) -> int:
    """Lower the priority of the runtime's compute threads (created lazily, by the first model call).

    With inference saturating both cores, the event loop would otherwise wait its turn in the
    scheduler behind them, and even a request refused at once (429) would take tens of ms.
    Returns how many threads were lowered.
    """
    if niceness <= 0 or not TASKS.is_dir():
        return 0
    lowered = 0
    for task in TASKS.iterdir():
        try:
            if (task / "comm").read_text().startswith(COMPUTE_PREFIXES):
                _lower(int(task.name), niceness)
                lowered += 1
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
    return lowered
