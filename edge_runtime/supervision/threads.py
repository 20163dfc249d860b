"""Threads whose names the operating system sees too (`top -H`, `ps -L`, /proc/<pid>/task).

Python 3.11-3.13 name threads only inside Python; setting the kernel's name as well lets an
operator (and bench/bench_pipeline.py) see which stage of which pipeline uses the CPU. Linux keeps
the first 15 bytes; elsewhere, or if libc refuses, the thread simply keeps its default name.
"""

from __future__ import annotations

import ctypes
import threading

from edge_runtime.supervision.libc import PR_SET_NAME, libc

KERNEL_NAME_BYTES = 15


def set_kernel_thread_name(name: str) -> bool:
    """Name the calling thread for the kernel; False where that is not possible."""
    c = libc()
    if c is None:
        return False
    raw = name.encode("utf-8", "replace")[:KERNEL_NAME_BYTES]
    return c.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0


class NamedThread(threading.Thread):
    """A threading.Thread that also carries its name at the OS level while it runs."""

    def run(self) -> None:
        set_kernel_thread_name(self.name)
        super().run()
