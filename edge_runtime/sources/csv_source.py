"""Sensor rows replayed from a CSV file: named columns, a sliding window per model input."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import EndOfStream, Frame, Source, SourceContext, SourceError
from edge_runtime.sources.windowing import SensorDataError, SlidingWindow, csv_rows


@dataclass(frozen=True)
class CsvOptions:
    type: str
    path: str
    columns: tuple[str, ...] = ()  # default: the model metadata's sensor columns
    window: int = field(default=0, metadata=at_least(0))  # rows per input; 0 = from the model
    stride: int = field(default=1, metadata=at_least(1))  # rows between two inputs
    rate: float = field(default=0.0, metadata=at_least(0))  # rows per second; 0 = as fast as possible
    loop: bool = False
    fps: float = field(default=0.0, metadata=at_least(0))


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

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"no such file {str(self.path)!r}")
        self._rows = csv_rows(self.path, self.columns)
        self._window.clear()

    def read(self) -> Frame | None:
        if self._rows is None:
            raise SourceError(f"{self.path} is not open")
        while True:
            try:
                line, row = next(self._rows)
            except StopIteration:
                if not self.options.loop:
                    raise EndOfStream from None
                self.open()
                continue
            except SensorDataError as exc:
                raise SourceError(str(exc)) from exc
            self._pace()
            self._window.push(row)
            self._since_last += 1
            if self._window.full and self._since_last >= self.options.stride:
                self._since_last = 0
                frame = Frame(self._window.snapshot(), self._count, f"{self.path.name}:{line}")
                self._count += 1
                return frame

    def _pace(self) -> None:
        if self.options.rate <= 0:
            return
        now = time.monotonic()
        if self._next_row_at > now:
            time.sleep(self._next_row_at - now)
        self._next_row_at = max(now, self._next_row_at) + 1.0 / self.options.rate
