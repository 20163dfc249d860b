"""CPUs of a pipeline's own: `[pipelines.model] cpus`.

With `cpus = [3]` the pipeline's inference thread runs only on CPU 3, and every other thread of
the daemon (sources, preprocessing, publishing, MQTT, other pipelines and their interpreters'
workers) on the remaining CPUs. The interpreter then never waits for a core while a decode or a
publish takes its own (the meter's `core_wait`, docs/PERFORMANCE.md goal 1) and keeps its caches.
Before any model is loaded or any thread started, every thread of the process (the main thread,
pools libraries started at import) moves to the remaining CPUs, so every thread made later
inherits them; each dedicated inference thread then
moves itself onto its CPUs (Linux affinity is per thread) and, with `threads > 1`, re-creates
its interpreter there so the workers inherit them too.
"""

from __future__ import annotations

import logging
import os
from typing import Collection, Iterable

logger = logging.getLogger(__name__)


def keep_off(cpus: Collection[int]) -> frozenset[int]:
    """Run every thread of this process that exists now (the calling one, and idle pools a
    library started at import, such as OpenBLAS's), and every thread started from now on, off
    `cpus`; returns the CPUs they may use. Nothing changes when `cpus` is empty (or would leave
    none: the config check refuses that, config/loader.py)."""
    rest = frozenset(os.sched_getaffinity(0)) - frozenset(cpus)
    if not cpus or not rest:
        return rest
    for task in _threads():
        try:
            os.sched_setaffinity(task, rest)
        except OSError:  # it ended meanwhile
            continue
    logger.info("CPUs %s kept for pipelines' inference threads; other threads on %s",
                describe(cpus), describe(rest))
    return rest


def _threads() -> list[int]:
    """The ids of this process's threads (Linux); just the calling thread (0) elsewhere."""
    try:
        return [int(task) for task in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def run_on(cpus: Collection[int]) -> None:
    """Run the calling thread only on `cpus`."""
    os.sched_setaffinity(0, set(cpus))


def describe(cpus: Iterable[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
