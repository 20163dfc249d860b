"""Sensor rows replayed from a CSV file: named columns, a sliding window per model input.

With a `rate`, rows are paced in time. `read` never waits longer than READ_SLICE for the next row
(the Source contract: about half a second): a row that is not due yet is held and `read` returns
None, so the pipeline's source loop beats its heartbeat and sees a stop request between slices. A
window of 32 rows at 0.5 rows per second takes a minute to fill; the watchdog must not take that
for a hang, and SIGTERM must not wait for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import (
    EndOfStream,
    Frame,
    Kind,
    Source,
    SourceContext,
    SourceError,
    SourceTraits,
)
from edge_runtime.sources.windowing import SensorDataError, SlidingWindow, csv_rows

READ_SLICE = 0.5  # seconds one read() may wait for paced rows before it returns None


@dataclass(frozen=True)
class CsvOptions:
    type: str
    path: str
    columns: tuple[str, ...] = ()  # default: the model metadata's sensor columns
    window: int = field(default=0, metadata=at_least(0))  # rows per input; 0 = from the model
    stride: int = field(default=1, metadata=at_least(1))  # rows between two inputs
    # The one pacing key: rows per second (a result every `stride` rows); 0 = as fast as possible
    rate: float = field(default=0.0, metadata=at_least(0))
    loop: bool = False

    def traits(self) -> SourceTraits:
        # a file: waited for, never dropped; it paces its own rows (`rate`)
        return SourceTraits(Kind.SENSOR, live=False, columns=self.columns, window=self.window)


class CsvSource(Source):
    def __init__(self, options: CsvOptions, ctx: SourceContext) -> None:
        self.options = options
        self.path: Path = ctx.resolve(options.path)
        self.columns = options.columns or ctx.columns
        self.window_length = options.window or ctx.window
        if not self.columns:
            raise SourceError(
                "no columns: set source.columns or convert the model with sensor metadata"
            )
        if self.window_length < 1:
            raise SourceError("no window length: set source.window")
        self._rows: Iterator[tuple[int, np.ndarray]] | None = None
        self._window = SlidingWindow(self.window_length, len(self.columns))
        self._since_last = options.stride
        self._count = 0
        self._next_row_at = 0.0
        self._held: tuple[int, np.ndarray] | None = None  # read from the file, not due yet

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"no such file {str(self.path)!r}")
        self._rows = csv_rows(self.path, self.columns)
        self._window.clear()
        self._held = None

    def read(self) -> Frame | None:
        if self._rows is None:
            raise SourceError(f"{self.path} is not open")
        give_up_at = time.monotonic() + READ_SLICE
        while True:
            if self._held is None:
                try:
                    self._held = next(self._rows)
                except StopIteration:
                    if not self.options.loop:
                        raise EndOfStream from None
                    self.open()
                    continue
                except SensorDataError as exc:
                    raise SourceError(str(exc)) from exc
            if not self._due(give_up_at):
                return None  # the row is held; the caller beats and calls again
            line, row = self._held
            self._held = None
            self._window.push(row)
            self._since_last += 1
            if self._window.full and self._since_last >= self.options.stride:
                self._since_last = 0
                frame = Frame(self._window.snapshot(), self._count, f"{self.path.name}:{line}")
                self._count += 1
                return frame

    def _due(self, give_up_at: float) -> bool:
        """Wait for the held row's time, but not past `give_up_at`; True once it is due."""
        if self.options.rate <= 0:
            return True
        now = time.monotonic()
        if self._next_row_at > now:
            if self._next_row_at > give_up_at:
                time.sleep(max(0.0, give_up_at - now))
                return False
            time.sleep(self._next_row_at - now)
        self._next_row_at = max(now, self._next_row_at) + 1.0 / self.options.rate
        return True
