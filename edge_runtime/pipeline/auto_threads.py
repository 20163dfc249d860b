"""`threads = "auto"`: the pipeline times each interpreter thread count on its own input, at
start, and keeps the one that gives the most results per second.

Why measure rather than use a rule: more interpreter threads make `invoke()` faster only while
the input work (decode, resize) has a core of its own. On 2 cores a video pipeline with 2
threads ran at 0.4x the 1-thread rate (bench/bench_video.py: every slice of decoding on either
core stalls both halves of the invoke), while a model whose input is cheap gains from 2. Which
one wins depends on the model, the input and the device, so the pipeline tries them.

A trial skips the first invokes after a switch (a new interpreter's first runs are slow), then
counts invokes for at least `trial_s` seconds; in a running pipeline the inference thread's rate
is the pipeline's rate (the stages hand over a fixed set of jobs). Every count is tried
`rounds` times in turn, the median rate per count decides, and a count with fewer threads wins
when it is within `tie` of the best (a 30 fps camera gives the same rate with 1 thread as with
4: the fewer threads, the more CPU left for everything else).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

logger = logging.getLogger(__name__)

AUTO = "auto"
ThreadSetting = int | Literal["auto"]
MAX_CANDIDATES = 4  # more interpreter threads than this never paid off on the devices we target


def candidate_counts(cpus: int | None = None) -> list[int]:
    """1 up to the number of CPUs (at most MAX_CANDIDATES)."""
    cpus = cpus or os.cpu_count() or 1
    return list(range(1, min(cpus, MAX_CANDIDATES) + 1))


def initial_threads(setting: ThreadSetting) -> int:
    """The thread count to load a model with: the setting, or for auto the first candidate."""
    return candidate_counts()[0] if setting == AUTO else int(setting)


def median(values: list[float]) -> float:
    """statistics.median without importing it (with decimal and fractions, 0.5 MB of RSS)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class TunerReport:
    chosen: int | None = None  # None while measuring
    rates: dict[int, list[float]] = field(default_factory=dict)  # count -> results/s per trial

    def medians(self) -> dict[int, float]:
        return {n: median(r) for n, r in sorted(self.rates.items()) if r}

    def describe(self) -> str:
        rates = ", ".join(f"{n}: {rate:.1f}/s" for n, rate in self.medians().items())
        state = f"chose {self.chosen}" if self.chosen is not None else "measuring"
        return f"auto, {state} ({rates})" if rates else f"auto, {state}"

    def to_dict(self) -> dict[str, object]:
        return {"chosen": self.chosen,
                "results_per_s": {str(n): round(r, 1) for n, r in self.medians().items()}}


class ThreadTuner:
    """Fed one `invoked()` per invoke by the inference thread; says when to switch counts."""

    def __init__(self, candidates: list[int], trial_s: float = 1.0, warmup: int = 3,
                 rounds: int = 2, tie: float = 0.03,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not candidates:
            raise ValueError("no thread counts to try")
        self._plan = [n for _ in range(rounds) for n in candidates]
        self._trial_s = trial_s
        self._warmup = warmup
        self._tie = tie
        self._clock = clock
        self.report = TunerReport(rates={n: [] for n in candidates})
        self._step = 0
        self._skip = warmup
        self._count = 0
        self._started = 0.0

    @property
    def current(self) -> int:
        """The count the interpreter should run with now."""
        if self.report.chosen is not None:
            return self.report.chosen
        return self._plan[self._step]

    @property
    def done(self) -> bool:
        return self.report.chosen is not None

    def invoked(self) -> int | None:
        """One more invoke done; returns a new thread count to switch to, else None."""
        if self.done:
            return None
        if self._skip:
            self._skip -= 1
            if not self._skip:
                self._started = self._clock()
            return None
        self._count += 1
        elapsed = self._clock() - self._started
        if elapsed < self._trial_s:
            return None
        self.report.rates[self._plan[self._step]].append(self._count / elapsed)
        before = self.current
        self._step += 1
        self._skip, self._count = self._warmup, 0
        if self._step == len(self._plan):
            self.report.chosen = self._choose()
        return self.current if self.current != before else None

    def interrupted(self) -> None:
        """The pipeline stalled (source outage, model reload): restart the current trial."""
        if not self.done:
            self._skip, self._count = self._warmup, 0

    def _choose(self) -> int:
        medians = self.report.medians()
        best = max(medians.values())
        return min(n for n, rate in medians.items() if rate >= best * (1 - self._tie))
