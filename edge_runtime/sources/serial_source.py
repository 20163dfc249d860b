"""`type = "serial"`: sensor readings printed on a serial port (a microcontroller on USB).

One reading per line, CSV or JSON (sensor_lines.py), windowed like the csv and mqtt sources. The
source is live: each `read` takes what the port has, and when several windows complete at once
only the newest is handed on (the others are counted in `replaced`).

A port that disappears (USB unplugged) or fails makes `read` raise SourceError; the pipeline
closes it and reopens it with backoff until the device is back. A line cut by the unplug is
dropped on reopen, never glued to the first line of the new connection. Prefer a stable name
such as /dev/serial/by-id/usb-... over /dev/ttyUSB0, which may change when the device returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import Frame, Kind, Source, SourceContext, SourceError, SourceTraits
from edge_runtime.sources.sensor_lines import LineWindows

WAIT = 0.5  # seconds a read waits for bytes (the pipeline beats its heartbeat in between)


@dataclass(frozen=True)
class SerialOptions:
    type: str
    port: str  # /dev/ttyUSB0, /dev/ttyACM0, /dev/serial/by-id/...
    baud: int = field(default=115200, metadata=at_least(1))
    columns: tuple[str, ...] = ()  # default: the model metadata's sensor columns
    window: int = field(default=0, metadata=at_least(0))  # rows per input; 0 = from the model
    stride: int = field(default=1, metadata=at_least(1))
    read_timeout: float = field(default=30.0, metadata=at_least(0.5))  # silence -> reopen
    fps: float = field(default=0.0, metadata=at_least(0))

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.SENSOR, live=True, max_fps=self.fps, columns=self.columns,
                            window=self.window)


class SerialSource(Source):
    def __init__(self, options: SerialOptions, ctx: SourceContext) -> None:
        import serial  # pyserial: a daemon dependency, imported only by pipelines that use it

        self._serial = serial
        self.options = options
        self.columns = options.columns or ctx.columns
        self.window_length = options.window or ctx.window
        if not self.columns:
            raise SourceError("no columns: set source.columns or convert the model with sensor metadata")
        if self.window_length < 1:
            raise SourceError("no window length: set source.window")
        self._windows = LineWindows(f"{ctx.pipeline}:{options.port}", self.columns,
                                    self.window_length, options.stride)
        self._port: serial.Serial | None = None
        self._count = 0
        self._last_data = 0.0
        self.replaced = 0

    def open(self) -> None:
        self.close()
        self._windows.restart()
        try:
            self._port = self._serial.Serial(self.options.port, self.options.baud, timeout=WAIT)
        except (self._serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open serial port {self.options.port!r}: {exc}") from exc
        self._last_data = time.monotonic()

    def read(self) -> Frame | None:
        port = self._port
        if port is None:
            raise SourceError(f"serial port {self.options.port!r} is not open")
        try:
            chunk = port.read(max(1, port.in_waiting))
        except (self._serial.SerialException, OSError) as exc:
            raise SourceError(f"serial port {self.options.port!r} failed: {exc}") from exc
        now = time.monotonic()
        if not chunk:
            if now - self._last_data > self.options.read_timeout:
                raise SourceError(f"serial port {self.options.port!r} sent nothing for "
                                  f"{self.options.read_timeout:g}s")
            return None
        self._last_data = now
        windows = self._windows.feed(chunk)
        if not windows:
            return None
        self.replaced += len(windows) - 1
        frame = Frame(windows[-1], self._count, f"{self.options.port}#{self._count}")
        self._count += 1
        return frame

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (self._serial.SerialException, OSError):
                pass  # the device is already gone
            self._port = None

    def input_errors(self) -> int:
        return self._windows.errors
