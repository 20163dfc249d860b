"""`type = "stream"`: a network camera (RTSP or HTTP MJPEG) read through OpenCV's FFmpeg backend.

    [pipelines.source]
    type = "stream"
    url = "rtsp://192.168.1.20:554/stream1"   # or http://.../video.mjpg
    username = "viewer"      # with password_file: credentials kept out of the config file
    password_file = "/etc/edge-runtime/camera-password"   # (user:pass@ in the URL works too)
    transport = "tcp"        # RTSP: tcp (default, survives packet loss) | udp
    open_timeout = 10        # seconds to connect and get the first frame
    read_timeout = 10        # seconds without a frame before the stream counts as stalled

What it guarantees:

- The pipeline's source thread never waits inside FFmpeg: a reader thread (`stream-<pipeline>`)
  owns the capture, opens it, grabs and releases it, so the source thread keeps its heartbeat
  and answers a stop within a second or two however long an open or a stalled read takes.
- The frame handed over is the newest the camera sent. The reader thread grabs every frame as
  it arrives, so neither FFmpeg's buffers nor the socket hold a backlog
  when the model is slower than the stream (and it skips the frames FFmpeg buffered while it
  probed the stream at open: `_ProbeBacklog`); it converts (`retrieve`) only a frame the pipeline
  asked for, so skipped frames cost no colour conversion. docs/PERFORMANCE.md has the frame age
  this keeps, against reading on demand.
- A stream that ends, or sends nothing for `read_timeout` seconds, raises SourceError: the
  pipeline closes it and reopens it with backoff, counting `source_failures` and
  `source_reconnects`. Other pipelines run in their own threads and never notice.
- Credentials never leave the URL: logs, errors and the stats name the stream by `redact(url)`
  (`rtsp://***@host/...`, and the values of password-like query parameters). `username` and
  `password_file` (read at each open, like the MQTT password) are put into the URL percent-encoded
  when it is opened, so a password with `@` or `:` works and the config file holds none.

The RTSP transport is an FFmpeg option that OpenCV only takes from the process environment
(OPENCV_FFMPEG_CAPTURE_OPTIONS, read when a capture opens): opens are serialised by one lock and
the variable is restored afterwards, so two streams with different transports do not mix.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import cv2
import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import Frame, Kind, Source, SourceContext, SourceError, SourceTraits
from edge_runtime.sources.process import Newest
from edge_runtime.supervision.threads import NamedThread

logger = logging.getLogger(__name__)

WAIT = 0.5  # seconds `read` waits before returning None (the pipeline beats its heartbeat)
SCHEMES = ("rtsp", "rtsps", "http", "https")
_SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "token", "key", "auth", "secret")
_CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPEN_LOCK = threading.Lock()  # guards the process environment while a capture opens


def redact(url: str) -> str:
    """`url` without its credentials: user:pass@ becomes ***@, secret query values ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _url_problem(url: str) -> str | None:
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in SCHEMES:
        return (f"expected an {'/'.join(s + '://' for s in SCHEMES)} URL, got {redact(url)!r} "
                "(local cameras: type = \"camera\")")
    if not urlsplit(url).hostname:
        return f"no host in {redact(url)!r}"
    return None


def _readable_file(path: Path) -> str | None:
    return None if path.is_file() else f"no such file: {path}"


@dataclass(frozen=True)
class StreamOptions:
    type: str
    url: str = field(metadata={"check": _url_problem})
    transport: Literal["tcp", "udp"] = "tcp"  # RTSP only
    open_timeout: float = field(default=10.0, metadata=at_least(0.5))
    read_timeout: float = field(default=10.0, metadata=at_least(0.5))
    fps: float = field(default=0.0, metadata=at_least(0))  # at most this many frames/s inferred
    # FFmpeg's decoder threads; 0: as many as cores. Each thread beyond the first holds back one
    # frame (frame threading), and the cores are the model's: 1 is right unless one core cannot
    # decode the stream in real time.
    decode_threads: int = field(default=1, metadata=at_least(0))
    username: str = ""
    password_file: Path | None = field(default=None, metadata={"check": _readable_file})

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.IMAGE, live=True, max_fps=self.fps)

    def cross_check(self) -> tuple[str, str] | None:
        if self.password_file is not None and not self.username:
            return "username", "password_file needs a username"
        if self.username and "@" in urlsplit(self.url).netloc:
            return "username", "the url has credentials already (user:pass@): give them once"
        return None

    def url_with_credentials(self) -> str:
        """The URL to open: `username` and the password file's first line put into it."""
        if not self.username:
            return self.url
        user_info = quote(self.username, safe="")
        if self.password_file is not None:
            try:
                password = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SourceError(f"cannot read password_file {self.password_file}: "
                                  f"{exc.strerror or exc}") from exc
            user_info += ":" + quote(password, safe="")
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, f"{user_info}@{parts.netloc}", parts.path, parts.query,
                           parts.fragment))

    @property
    def ffmpeg_options(self) -> str:
        """OPENCV_FFMPEG_CAPTURE_OPTIONS for this stream (key;value pairs joined by |)."""
        if urlsplit(self.url).scheme.lower().startswith("rtsp"):
            return f"rtsp_transport;{self.transport}"
        return ""


def open_capture(url: str, ffmpeg_options: str, open_timeout: float, read_timeout: float,
                 decode_threads: int = 0) -> cv2.VideoCapture:
    """A VideoCapture on `url` through FFmpeg with these options, timeouts and decoder threads
    (0: FFmpeg's choice); SourceError if it does not open."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
    if decode_threads:
        params += [cv2.CAP_PROP_N_THREADS, decode_threads]
    with _OPEN_LOCK:
        before = os.environ.get(_CAPTURE_OPTIONS)
        if ffmpeg_options:
            os.environ[_CAPTURE_OPTIONS] = ffmpeg_options
        else:
            os.environ.pop(_CAPTURE_OPTIONS, None)
        try:
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if before is None:
                os.environ.pop(_CAPTURE_OPTIONS, None)
            else:
                os.environ[_CAPTURE_OPTIONS] = before
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {redact(url)} (no answer within {open_timeout:g}s, "
                          "refused, or not a video stream)")
    return capture


class _ProbeBacklog:
    """The frames FFmpeg buffered while it opened the stream, which `grab` then returns at once.

    Opening an RTSP stream reads it for a second or two to learn its format; those frames come
    out of the first grabs in a burst, so the first frame handed over would be as old as the open
    took. A frame is from that backlog when its stream time is within the open's duration (less
    `SLACK`) of the first frame's, and the reader is still within that duration of the open.
    Both bounds end it: a stream without usable timestamps skips for at most the open's duration,
    and a quick open (HTTP MJPEG, ~0.1 s) skips nothing.
    """

    SLACK = 0.2  # seconds of the backlog kept: a frame that young is as good as the next

    def __init__(self, open_took: float) -> None:
        self._window = open_took - self.SLACK
        self._until = time.monotonic() + max(self._window, 0.0)
        self._first: float | None = None

    def stale(self, stream_time: float) -> bool:
        if self._window <= 0 or time.monotonic() > self._until:
            return False
        if self._first is None:
            self._first = stream_time
        return stream_time - self._first < self._window


class NewestFrameReader:
    """A thread that opens the stream, grabs every frame and converts the ones asked for.

    The capture is this thread's alone: it opens it (FFmpeg may wait `open_timeout` for that),
    grabs, and releases it when it ends, so the pipeline's source thread never blocks in FFmpeg
    and keeps beating its heartbeat (the watchdog) and answering a stop. `request()` asks for a
    frame; the next frame grabbed after it is converted and put into `newest`. `grabbed` counts
    every frame the stream sent, `converted` those handed over.
    """

    def __init__(self, url: str, ffmpeg_options: str, open_timeout: float, read_timeout: float,
                 decode_threads: int, name: str, label: str) -> None:
        self._open = (url, ffmpeg_options, open_timeout, read_timeout, decode_threads)
        self._label = label
        self.newest: Newest[tuple[float, np.ndarray]] = Newest()
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self.opened = threading.Event()
        self.opened_at = 0.0  # time.monotonic() when the stream opened
        self.error: str | None = None  # why the stream ended, once it has
        self.grabbed = 0
        self.converted = 0
        self._thread = NamedThread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    @property
    def ended(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        capture = None
        try:
            started = time.monotonic()
            capture = open_capture(*self._open)
            self.opened_at = time.monotonic()
            self.opened.set()
            logger.info("%s: %s open", self._thread.name, self._label)
            backlog = _ProbeBacklog(self.opened_at - started)
            while not self._stop.is_set():
                if not capture.grab():  # FFmpeg's read timeout ends a stalled stream too
                    self.error = f"{self._label} ended or sent nothing in time"
                    return
                grabbed_at = time.time()
                self.grabbed += 1
                if backlog.stale(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000):
                    continue
                if self._wanted.is_set():
                    self._wanted.clear()
                    ok, image = capture.retrieve()
                    if ok and image is not None:
                        self.converted += 1
                        self.newest.put((grabbed_at, image))
        except SourceError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported by the source's next read
            self.error = f"{self._label}: {exc}"
        finally:
            if capture is not None:
                capture.release()
            self.newest.put((0.0, np.empty(0)))  # wakes a waiting read at once when it ended

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end; True when it did within `timeout`. Otherwise it is inside
        FFmpeg (an open or a grab), ends within FFmpeg's timeout and releases the capture itself."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


STOP_WAIT = 2.0  # seconds close() waits for the reader thread before leaving it to end by itself


class StreamSource(Source):
    def __init__(self, options: StreamOptions, ctx: SourceContext) -> None:
        self.options = options
        self.label = redact(options.url)
        self._thread_name = f"stream-{ctx.pipeline}"
        self._reader: NewestFrameReader | None = None
        self._count = 0
        self._last_frame = 0.0

    def open(self) -> None:
        """Start connecting (on the reader thread); a failure surfaces in the next `read`."""
        self.close()
        options = self.options
        self._reader = NewestFrameReader(
            options.url_with_credentials(), options.ffmpeg_options, options.open_timeout,
            options.read_timeout, options.decode_threads, self._thread_name, self.label)
        self._reader.start()
        self._last_frame = time.monotonic()

    def read(self) -> Frame | None:
        reader = self._reader
        if reader is None:
            raise SourceError(f"{self.label} is not open")
        reader.request()
        got = reader.newest.take(WAIT)
        if got is None or not got[1].size:
            if reader.ended:
                raise SourceError(reader.error or f"{self.label} ended")
            if reader.opened.is_set():
                limit, since = self.options.read_timeout, max(self._last_frame, reader.opened_at)
            else:
                limit, since = self.options.open_timeout, self._last_frame
            if time.monotonic() - since > limit + 2 * WAIT:  # FFmpeg's own timeouts come first
                raise SourceError(f"{self.label} sent no frame for {limit:g}s")
            return None
        self._last_frame = time.monotonic()
        captured, image = got
        frame = Frame(image, self._count, f"stream#{self._count}", captured=captured)
        self._count += 1
        return frame

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.stop(STOP_WAIT):
            logger.info("%s: still inside FFmpeg; its thread ends within the stream's timeouts",
                        self.label)

    @property
    def frames_grabbed(self) -> int:
        """Frames the stream sent since the last open (handed over or skipped as stale)."""
        return self._reader.grabbed if self._reader else 0
