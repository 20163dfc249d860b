"""`type = "command"`: a process the pipeline starts, whose standard output is the input.

This is how a Raspberry Pi camera module is read without picamera2 in the virtualenv
(`rpicam-vid -t 0 --codec mjpeg -o -`), how `arecord` gives audio, and how any tool that writes a
stream becomes a source. Formats of its standard output:

    mjpeg   concatenated JPEGs                      -> images (BGR)
    raw     width x height frames in pixel_format   -> images (BGR)
    s16le   interleaved 16-bit audio samples        -> windows of `window` samples x channels
    lines   one reading per line, CSV or JSON       -> windows of `window` rows x columns

The source is live: a reader thread drains the pipe and keeps only the newest unit, so inference
always gets the newest frame however slow it is. When the process exits (or writes nothing for
`read_timeout` seconds) `read` raises SourceError: the pipeline stops it and starts it again with
backoff. process.py says how it dies with the daemon and how its stderr is logged.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import Frame, Kind, Source, SourceContext, SourceError, SourceTraits
from edge_runtime.sources.image_decode import decode_image
from edge_runtime.sources.process import ChildProcess, Newest
from edge_runtime.sources.sensor_lines import LineWindows
from edge_runtime.sources.stream_formats import (
    FixedChunks,
    MjpegSplitter,
    PixelFormat,
    RawLayout,
    SampleWindows,
)

WAIT = 0.5  # seconds `read` waits before returning None (the pipeline beats its heartbeat)

Format = Literal["mjpeg", "raw", "s16le", "lines"]
KINDS: dict[str, Kind] = {"mjpeg": Kind.IMAGE, "raw": Kind.IMAGE, "s16le": Kind.AUDIO,
                         "lines": Kind.SENSOR}


# Tokens a shell would act on; the command runs without a shell, so they would reach the program
# as arguments (ffmpeg ... | cat: ffmpeg gets "|" and "cat", fails, and is restarted forever).
SHELL_OPERATORS = ("|", "||", "|&", "&", "&&", ";", ";;", "<", "<<", "<<<", ">", ">>", "&>")


def _command_problem(command: tuple[str, ...]) -> str | None:
    """Why `command` cannot run as written, or None: checked when the config is read."""
    if not command or not command[0].strip():
        return "the command is empty"
    if len(command) > 1:
        return None  # an argv list goes to the program as it is
    try:
        argv = shlex.split(command[0])
    except ValueError as exc:  # an unbalanced quote
        return f"cannot split {command[0]!r} into arguments: {exc}"
    for token in argv[1:]:
        if (token in SHELL_OPERATORS or token.startswith((">", "<", "2>", "1>", "&>", "`"))
                or re.match(r"\$[A-Za-z_{(]", token)):
            return (f"{token!r} is shell syntax, but the command runs without a shell: for pipes, "
                    "redirections or variables give an argv list such as "
                    "[\"sh\", \"-c\", \"...\"] (or a script)")
    return None


# systemd's PATH for a service that sets none (edge-runtime.service does not; a PATH= line in
# /etc/edge-runtime/environment would)
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def program_problem(program: str) -> str | None:
    """Why `program` (argv[0]) cannot be started from here, or None. A name without a slash is
    looked up on this process's PATH, as the child process will be."""
    if os.sep in program:
        path = Path(program).expanduser()
        if not path.is_file():
            return f"program {program!r} does not exist"
        if not os.access(path, os.X_OK):
            return f"program {program!r} is not executable (chmod +x)"
        return None
    search = os.environ.get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        return (f"program {program!r} not found on PATH ({search}: the PATH of this process; the "
                f"service's is {SERVICE_PATH} unless set): install it or give its absolute path")
    return None


@dataclass(frozen=True)
class CommandOptions:
    type: str
    # argv as a list, or one string split like a shell would (no pipes, globs or variables)
    command: tuple[str, ...] = field(metadata={"check": _command_problem})
    format: Format
    width: int = field(default=0, metadata=at_least(0))  # raw: frame size and pixel format
    height: int = field(default=0, metadata=at_least(0))
    pixel_format: PixelFormat = "bgr24"
    sample_rate: int = field(default=0, metadata=at_least(0))  # s16le: 0 = from the model
    channels: int = field(default=1, metadata=at_least(1))
    columns: tuple[str, ...] = ()  # lines: default from the model's sensor metadata
    window: int = field(default=0, metadata=at_least(0))  # samples or rows; 0 = from the model
    stride: int = field(default=0, metadata=at_least(0))  # between windows; 0 = window (s16le), 1
    read_timeout: float = field(default=10.0, metadata=at_least(0.5))  # silence -> restart
    fps: float = field(default=0.0, metadata=at_least(0))

    @property
    def argv(self) -> list[str]:
        if len(self.command) == 1:
            return shlex.split(self.command[0])
        return list(self.command)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """s16le: one column per interleaved channel."""
        return tuple(f"channel{i}" for i in range(self.channels))

    def traits(self) -> SourceTraits:
        """The kind follows `format`; always live (a reader thread keeps the newest unit)."""
        columns = self.channel_names if self.format == "s16le" else self.columns
        return SourceTraits(KINDS[self.format], live=True, max_fps=self.fps, columns=columns,
                            window=self.window, sample_rate=self.sample_rate)


class CommandSource(Source):
    def __init__(self, options: CommandOptions, ctx: SourceContext) -> None:
        self.options = options
        self._argv = options.argv
        if not self._argv:
            raise SourceError("command is empty")
        self._name = f"{ctx.pipeline}:{Path(self._argv[0]).name}"
        self._target = ctx.image_size
        self._newest: Newest[tuple[float, object]] = Newest()
        self._child: ChildProcess | None = None
        self._count = 0
        self._errors = 0
        self._last_unit = 0.0
        self._line_windows: LineWindows | None = None
        self._make_parser = self._parser_factory(options, ctx)

    def preflight(self) -> tuple[str, str] | None:
        """The program must be installed, looked up on the PATH of this process: the daemon's
        when `check` runs as the service would, the user's PATH when run from a shell."""
        return ("command", problem) if (problem := program_problem(self._argv[0])) else None

    def _parser_factory(self, options: CommandOptions, ctx: SourceContext
                        ) -> Callable[[], Callable[[bytes], list]]:
        """A function that makes a fresh parser for each run of the command; checks options."""
        if options.format == "mjpeg":
            return lambda: MjpegSplitter().feed
        if options.format == "raw":
            if not options.width or not options.height:
                raise SourceError("format 'raw' needs width and height")
            layout = RawLayout(options.width, options.height, options.pixel_format)
            self._layout = layout
            return lambda: FixedChunks(layout.frame_bytes).feed
        if options.format == "s16le":
            self.sample_rate = options.sample_rate or ctx.sample_rate
            self.window_length = options.window or ctx.window
            if not self.sample_rate:
                raise SourceError("format 's16le' needs sample_rate (or a model with audio metadata)")
            if self.window_length < 1:
                raise SourceError("no window length: set source.window (samples)")
            self.columns = options.channel_names
            stride = options.stride or self.window_length
            return lambda: SampleWindows(options.channels, self.window_length, stride).feed
        self.columns = options.columns or ctx.columns
        self.window_length = options.window or ctx.window
        if not self.columns:
            raise SourceError("no columns: set source.columns or convert the model with sensor metadata")
        if self.window_length < 1:
            raise SourceError("no window length: set source.window")
        windows = LineWindows(self._name, self.columns, self.window_length, options.stride or 1)
        self._line_windows = windows

        def lines() -> Callable[[bytes], list]:
            windows.restart()  # a new run: no partial line or rows from the last one
            return windows.feed

        return lines

    def open(self) -> None:
        self.close()
        self._newest.clear()
        parse = self._make_parser()

        def on_data(chunk: bytes) -> None:
            units = parse(chunk)
            if units:
                self._newest.put((time.time(), units[-1]))  # older units are stale already

        self._child = ChildProcess(self._argv, self._name, on_data)
        self._child.start()
        self._last_unit = time.monotonic()

    def read(self) -> Frame | None:
        child = self._child
        if child is None:
            raise SourceError(f"{self._argv[0]!r} is not running")
        got = self._newest.take(WAIT)
        if got is None:
            if child.finished:
                raise SourceError(child.failure())
            if time.monotonic() - self._last_unit > self.options.read_timeout:
                raise SourceError(f"{self._argv[0]} wrote no complete "
                                  f"{self.options.format} unit for {self.options.read_timeout:g}s")
            return None
        self._last_unit = time.monotonic()
        captured, unit = got
        data = self._to_data(unit)
        if data is None:
            return None
        frame = Frame(data[0], self._count, f"{Path(self._argv[0]).name}#{self._count}",
                      captured=captured, full_size=data[1])
        self._count += 1
        return frame

    def _to_data(self, unit: object) -> tuple[np.ndarray, tuple[int, int] | None] | None:
        if self.options.format == "mjpeg":
            assert isinstance(unit, bytes)
            image, size = decode_image(np.frombuffer(unit, np.uint8), self._target)
            if image is None:
                self._errors += 1
                return None
            reduced = size != (image.shape[1], image.shape[0])
            return image, size if reduced else None
        if self.options.format == "raw":
            assert isinstance(unit, bytes)
            return self._layout.to_bgr(unit), None
        assert isinstance(unit, np.ndarray)
        return unit, None

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def input_errors(self) -> int:
        lines = self._line_windows
        return self._errors + (lines.errors if lines else 0)

    @property
    def replaced(self) -> int:
        """Units the process wrote that were never read because a newer one came first."""
        return self._newest.replaced
