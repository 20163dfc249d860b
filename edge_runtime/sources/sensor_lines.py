"""Sensor readings as text lines (a serial port, a command's output) into sliding windows.

One reading per line, either JSON (`{"ax": 0.1, ...}`, `[0.1, 0.2, 0.3]`, `0.5`: the forms the
mqtt source accepts) or comma-separated numbers in the order of `columns`. A CSV line of exactly
the column names (a microcontroller printing a header at boot) re-orders the columns that follow
by that header. A line with no values (blank, or only commas and spaces) is no reading, as in a
CSV file (`windowing.is_blank`). Anything else (boot messages, line noise, a line cut in half by
an unplug) is a
bad reading: counted, logged at a limited rate, skipped; the window keeps the good rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.mqtt_source import parse_sensor_payload
from edge_runtime.sources.stream_formats import LineSplitter
from edge_runtime.sources.windowing import SensorDataError, SlidingWindow, is_blank, parse_row

logger = logging.getLogger(__name__)


class LineParser:
    """Lines into rows of `columns` float32 values."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._picks: list[int] | None = None  # from a header line: field index per column

    def parse(self, line: str) -> list[np.ndarray]:
        """The rows in one line ([] for a header line); SensorDataError if it is no reading."""
        text = line.strip()
        if not text:
            return []
        if text[0] in "{[":
            return parse_sensor_payload(text.encode("utf-8"), self.columns)
        fields = [f.strip() for f in text.split(",")]
        if is_blank(fields):
            return []
        if set(self.columns) <= set(fields) and len(set(fields)) == len(fields):
            self._picks = [fields.index(c) for c in self.columns]
            return []
        if self._picks is not None:
            if len(fields) <= max(self._picks):
                raise SensorDataError(f"{len(fields)} fields, the header has more")
            fields = [fields[i] for i in self._picks]
        if len(fields) != len(self.columns):
            raise SensorDataError(f"{len(fields)} values, expected {len(self.columns)} "
                                  f"({', '.join(self.columns)})")
        return [parse_row(fields, "line")]


class LineWindows:
    """Chunks of text in, full windows out: split, parse, push, one window every `stride` rows."""

    def __init__(self, name: str, columns: Sequence[str], window: int, stride: int) -> None:
        self.name = name
        self._lines = LineSplitter()
        self._parser = LineParser(columns)
        self._window = SlidingWindow(window, len(columns))
        self._stride = stride
        self._since_last = stride
        self._warn = RateLimitedLogger(logger)
        self._bad = 0

    @property
    def errors(self) -> int:
        """Bad readings skipped so far (including overlong lines)."""
        return self._bad + self._lines.overlong

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        windows: list[np.ndarray] = []
        for raw in self._lines.feed(chunk):
            try:
                rows = self._parser.parse(raw.decode("utf-8"))
            except (UnicodeDecodeError, SensorDataError) as exc:
                self._bad += 1
                reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                self._warn.warning(self.name, "%s: skipping bad reading %r: %s", self.name,
                                   raw[:80], reason)
                continue
            for row in rows:
                self._window.push(row)
                self._since_last += 1
                if self._window.full and self._since_last >= self._stride:
                    self._since_last = 0
                    windows.append(self._window.snapshot())
        return windows

    def restart(self) -> None:
        """The stream was reopened: drop the partial line and the rows of the old stream."""
        self._lines.reset()
        self._window.clear()
        self._since_last = self._stride
