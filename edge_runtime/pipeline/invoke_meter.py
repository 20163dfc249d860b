"""Where an inference thread's time goes: in `invoke()`, and between one invoke and the next.

The interpreter is the pipeline's bottleneck, so every millisecond its thread spends outside
`invoke()` is a millisecond of throughput lost. `InvokeMeter` splits that time by cause, from
marks the inference loop sets as it goes (a `perf_counter` read each, well under a microsecond):

    invoke ends ─► copy_out ─► hand_off ─► wait_input ─► copy_in ─► (other) ─► next invoke starts
                   outputs     job to the   the next      prepared    loop
                   copied out  publish      prepared job  input into  overhead
                               queue        (or the GIL)  the tensor

and the kernel's per-thread accounting (the thread's CPU clock and `/proc/thread-self/schedstat`,
Linux, one `pread` per mark of an invoke) splits the wall time of `invoke()` itself into CPU,
`core_wait` (runnable, but another
thread had the core: decode, publish or another process competing for cores) and `stalled`
(neither running nor runnable: waiting for the GIL on the way back from the C++ call (Python's
switch interval, 5 ms by default, bounds that wait), or with `threads` > 1 waiting for the
interpreter's own worker threads). `wait_input` likewise has the core wait inside it.
All totals are cumulative since start; `snapshot()` is read by the stats reporter.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

# prepare and publish: sensor pipelines do both on the inference thread, inside the gap.
GAP_CAUSES = ("copy_out", "hand_off", "wait_input", "copy_in", "prepare", "publish", "other")
SCHEDSTAT = "/proc/thread-self/schedstat"


class SchedStat:
    """The calling thread's (CPU ns, run-queue wait ns) from the kernel; zeros where unavailable.

    CPU time comes from the thread's CPU clock (exact at any moment); the run-queue wait from
    schedstat, which the kernel brings up to date each time the thread gets a core, so a running
    thread reading its own sees every wait that has ended. Opened by the thread it measures
    (thread-self), read with pread: one system call a sample."""

    def __init__(self, path: str = SCHEDSTAT) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def read(self) -> tuple[int, int]:
        if self._fd is None:
            return 0, 0
        try:
            wait = int(os.pread(self._fd, 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return 0, 0
        return time.thread_time_ns(), wait

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class MeterTotals:
    """Seconds, summed over every invoke since start (gaps: from the second invoke on)."""

    invokes: int = 0
    invoke_s: float = 0.0  # wall time inside invoke()
    invoke_cpu_s: float = 0.0  # of which the calling thread ran
    invoke_core_wait_s: float = 0.0  # of which it was runnable but had no core
    gaps: int = 0
    gap_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GAP_CAUSES, 0.0))
    gap_core_wait_s: float = 0.0  # run-queue wait between invokes (inside the causes above)
    schedstat: bool = False

    @property
    def invoke_stalled_s(self) -> float:
        return max(0.0, self.invoke_s - self.invoke_cpu_s - self.invoke_core_wait_s)

    @property
    def busy(self) -> float:
        """Share of the time from the first invoke to the last spent inside invoke()."""
        gap = sum(self.gap_s.values())
        first = self.invoke_s / self.invokes if self.invokes else 0.0
        inside = self.invoke_s - first  # the first invoke has no gap before it
        return inside / (inside + gap) if inside + gap > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """The stats message's `interpreter` entry: ms per invoke, by cause."""
        per_invoke = (lambda s: round(s * 1e3 / self.invokes, 3)) if self.invokes else (lambda s: 0.0)
        per_gap = (lambda s: round(s * 1e3 / self.gaps, 3)) if self.gaps else (lambda s: 0.0)
        doc: dict[str, object] = {
            "invokes": self.invokes,
            "busy": round(self.busy, 4),
            "invoke_ms": per_invoke(self.invoke_s),
            "gap_ms": {cause: per_gap(s) for cause, s in self.gap_s.items()},
        }
        if self.schedstat:
            doc["invoke_ms_split"] = {"cpu": per_invoke(self.invoke_cpu_s),
                                      "core_wait": per_invoke(self.invoke_core_wait_s),
                                      "stalled": per_invoke(self.invoke_stalled_s)}
            doc["gap_core_wait_ms"] = per_gap(self.gap_core_wait_s)
        return doc


class InvokeMeter:
    """Marks set by one inference thread; `snapshot()` may be called from any thread."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 schedstat: Callable[[], SchedStat] | None = SchedStat) -> None:
        self._clock = clock
        self._schedstat_factory = schedstat
        self._sched: SchedStat | None = None
        self._totals = MeterTotals()
        self._mark: float | None = None  # when the current gap segment began; None before invoke 1
        self._gap_sched = (0, 0)
        self._invoke_started = 0.0
        self._invoke_sched = (0, 0)

    def bind_thread(self) -> None:
        """Call on the inference thread before the first invoke (schedstat is per thread)."""
        if self._schedstat_factory is not None:
            self._sched = self._schedstat_factory()
            self._totals.schedstat = self._sched.available

    def close(self) -> None:
        if self._sched is not None:
            self._sched.close()

    def _read_sched(self) -> tuple[int, int]:
        return self._sched.read() if self._sched is not None else (0, 0)

    def mark(self, cause: str) -> None:
        """The time since the last mark (or since invoke ended) was spent on `cause`."""
        if self._mark is None:
            return
        now = self._clock()
        self._totals.gap_s[cause] += now - self._mark
        self._mark = now

    def invoke_starting(self) -> None:
        now = self._clock()
        sched = self._read_sched()
        totals = self._totals
        if self._mark is not None:
            totals.gap_s["other"] += now - self._mark
            totals.gaps += 1
            totals.gap_core_wait_s += (sched[1] - self._gap_sched[1]) / 1e9
        self._invoke_started, self._invoke_sched = now, sched

    def invoke_ended(self) -> float:
        """Returns the invoke's wall time in seconds."""
        now = self._clock()
        sched = self._read_sched()
        totals = self._totals
        wall = now - self._invoke_started
        totals.invokes += 1
        totals.invoke_s += wall
        totals.invoke_cpu_s += (sched[0] - self._invoke_sched[0]) / 1e9
        totals.invoke_core_wait_s += (sched[1] - self._invoke_sched[1]) / 1e9
        self._mark, self._gap_sched = now, sched
        return wall

    def idle(self) -> None:
        """Nothing is coming for a while (source waiting, reload): the next gap is not counted."""
        self._mark = None

    def snapshot(self) -> MeterTotals:
        totals = self._totals
        return MeterTotals(totals.invokes, totals.invoke_s, totals.invoke_cpu_s,
                           totals.invoke_core_wait_s, totals.gaps, dict(totals.gap_s),
                           totals.gap_core_wait_s, totals.schedstat)
