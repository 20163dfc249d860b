"""Threads whose names the operating system sees too (`top -H`, `ps -L`, /proc/<pid>/task), and
that do not take a core from an interpreter.

Python 3.11-3.13 name threads only inside Python; setting the kernel's name as well lets an
operator (and bench/bench_pipeline.py) see which stage of which pipeline uses the CPU. Linux keeps
the first 15 bytes; elsewhere, or if libc refuses, the thread simply keeps its default name.

Every NamedThread but the pipelines' inference threads runs at SCHED_BATCH (Linux): the same
share of the CPU as before, but waking up it does not preempt the thread running on a core, so
a decode, publish or MQTT thread that wakes waits for the next tick or a free core instead of
pushing the interpreter off its core mid-invoke (the meter's `core_wait`). Measured side by side
(docs/PERFORMANCE.md, "Helper threads at SCHED_BATCH"): the interpreter's core wait roughly
halves, results/s gain a few percent. Where the policy cannot be set, the thread runs as usual.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

from edge_runtime.supervision.libc import PR_SET_NAME, libc

KERNEL_NAME_BYTES = 15


def set_kernel_thread_name(name: str) -> bool:
    """Name the calling thread for the kernel; False where that is not possible."""
    c = libc()
    if c is None:
        return False
    raw = name.encode("utf-8", "replace")[:KERNEL_NAME_BYTES]
    return c.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0


def run_as_batch() -> bool:
    """Put the calling thread in SCHED_BATCH; False where that is not possible."""
    if not hasattr(os, "SCHED_BATCH"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        return False
    return True


class NamedThread(threading.Thread):
    """A threading.Thread that also carries its name at the OS level while it runs; `batch`
    (the default) runs it at SCHED_BATCH. Only the threads that invoke an interpreter pass
    batch=False."""

    def __init__(self, *args: Any, batch: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch = batch

    def run(self) -> None:
        set_kernel_thread_name(self.name)
        if self.batch:
            run_as_batch()
        super().run()
