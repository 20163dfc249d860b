"""Sensor rows into fixed-size windows: shared by the csv and mqtt sources and the converter."""

from __future__ import annotations

import csv
import math
from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np


FLOAT32_MAX = float(np.finfo(np.float32).max)


class SensorDataError(ValueError):
    """A sensor file or value that cannot be used; the message names the file, line or column."""


class SlidingWindow:
    """The last `length` rows of `width` values, oldest first, in one preallocated array."""

    def __init__(self, length: int, width: int) -> None:
        if length < 1 or width < 1:
            raise ValueError("a window needs at least one row and one column")
        self.length = length
        self.width = width
        self._rows = np.zeros((length, width), np.float32)
        self._count = 0

    def push(self, row: np.ndarray | Sequence[float]) -> bool:
        """Add a row; True once the window is full."""
        self._rows[:-1] = self._rows[1:]
        self._rows[-1] = row
        self._count = min(self._count + 1, self.length)
        return self.full

    @property
    def full(self) -> bool:
        return self._count == self.length

    def clear(self) -> None:
        self._count = 0

    def snapshot(self) -> np.ndarray:
        return self._rows.copy()


def parse_row(values: Sequence[str], where: str) -> np.ndarray:
    """Strings to a finite float32 row; SensorDataError names `where` and the bad value."""
    try:
        floats = [float(text) for text in values]
    except ValueError:
        floats = []
    # One pass of comparisons: NaN fails them, and so does anything float32 cannot hold.
    if floats and all(-FLOAT32_MAX <= value <= FLOAT32_MAX for value in floats):
        return np.array(floats, np.float32)
    for text in values:  # the slow path, only to name the bad value
        try:
            value = float(text)
        except ValueError:
            raise SensorDataError(f"{where}: {text!r} is not a number") from None
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise SensorDataError(f"{where}: {text!r} is not a finite number"
                                  + (" (beyond float32)" if math.isfinite(value) else ""))
    return np.array(floats, np.float32)  # no values at all


def is_blank(fields: Sequence[str]) -> bool:
    """A line with no values at all (empty, or only separators and spaces): no row, no error.
    The rule of every sensor text input: CSV files and the lines of a serial port or command."""
    return all(not field.strip() for field in fields)


def csv_rows(path: Path | str, columns: Sequence[str]) -> Iterator[tuple[int, np.ndarray]]:
    """(line number, row of the named columns) for each data line of a CSV with a header."""
    for line, row, _ in csv_records(path, columns):
        yield line, row


def csv_records(
    path: Path | str, columns: Sequence[str], label_column: str | None = None
) -> Iterator[tuple[int, np.ndarray, str]]:
    """(line number, row of the named columns, `label_column`'s text or "") for each data line.

    The one reading of a sensor CSV (the csv source's and the converter's): a header line names
    the columns (surrounding spaces ignored), blank lines are skipped, a short line is an error.
    """
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise SensorDataError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise SensorDataError(f"{path}: empty file, expected a header line")
        header = [h.strip() for h in header]
        wanted = [*columns, label_column] if label_column is not None else list(columns)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise SensorDataError(
                f"{path}: no column {', '.join(map(repr, missing))} (header has {header})"
            )
        picks = [header.index(c) for c in columns]
        label_at = header.index(label_column) if label_column is not None else None
        for line, record in enumerate(reader, start=2):
            if is_blank(record):
                continue
            if len(record) < len(header):
                raise SensorDataError(f"{path}:{line}: {len(record)} fields, header has {len(header)}")
            label = record[label_at].strip() if label_at is not None else ""
            yield line, parse_row([record[i] for i in picks], f"{path}:{line}"), label


def csv_windows(
    path: Path | str, columns: Sequence[str], window: int, stride: int = 1,
    label_column: str | None = None,
) -> Iterator[tuple[np.ndarray, tuple[str, ...]]]:
    """(window, the label of each of its rows) for each full sliding window of `window` rows,
    advancing `stride` rows at a time (labels are "" without a `label_column`)."""
    rows = SlidingWindow(window, len(columns))
    labels: deque[str] = deque(maxlen=window)
    since_last = stride
    for _, row, label in csv_records(path, columns, label_column):
        rows.push(row)
        labels.append(label)
        since_last += 1
        if rows.full and since_last >= stride:
            since_last = 0
            yield rows.snapshot(), tuple(labels)
