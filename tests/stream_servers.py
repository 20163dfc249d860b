"""Network cameras on loopback for the stream source tests and bench: HTTP MJPEG and RTSP.

MjpegServer is a live camera in this process: frame i is made at `start + i / fps` (its capture
time, `frame_time(i)`) with i drawn into it as a bar code (`frame_index` reads it back), and a
client that does not keep up gets the frame of the moment, as a camera would. It asks for HTTP
Basic credentials when given some. RtspServer runs tests/rtsp_server.py (gst-rtsp-server) with
Debian's Python. Both can be stopped mid-stream and started again on the same port.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from ports import free_port

BITS = 16
SIZE = (160, 120)  # width, height
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def draw_index(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A frame whose top half is `index` in BITS black/white blocks (survives JPEG)."""
    width, height = size
    image = np.full((height, width, 3), 80, np.uint8)
    block = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            image[: height // 2, bit * block:(bit + 1) * block] = 255
        else:
            image[: height // 2, bit * block:(bit + 1) * block] = 0
    return image


def frame_index(image: np.ndarray) -> int:
    """The index draw_index drew into `image` (at any size it was decoded at)."""
    height, width = image.shape[:2]
    block = width / BITS
    row = image[height // 4]
    value = 0
    for bit in range(BITS):
        if row[int((bit + 0.5) * block)].mean() > 128:
            value |= 1 << bit
    return value


def frame_stamp(image: np.ndarray, bits: int = 32) -> int:
    """The wall time in ms (mod 2**32) that tests/rtsp_server.py --stamped drew into `image`."""
    height, width = image.shape[:2]
    block = width / bits
    row = image[height // 4]
    return sum(1 << bit for bit in range(bits) if row[int((bit + 0.5) * block)].mean() > 128)


def stamp_age(image: np.ndarray) -> float:
    """Seconds since the frame was made, from its stamp (same machine's clock)."""
    return ((int(time.time() * 1000) - frame_stamp(image)) % 2**32) / 1000


class MjpegServer:
    def __init__(self, fps: float = 20.0, credentials: tuple[str, str] | None = None,
                 port: int = 0, size: tuple[int, int] = SIZE) -> None:
        self.fps = fps
        self.size = size
        self.credentials = credentials
        self.port = port or free_port()
        self.started = time.time()
        self.clients = 0  # connections served since creation
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.stalled = threading.Event()  # set: connections stay open and nothing is sent
        self._jpegs: dict[int, bytes] = {}

    def url(self, user_info: str = "") -> str:
        at = f"{user_info}@" if user_info else ""
        return f"http://{at}127.0.0.1:{self.port}/video.mjpg"

    def frame_time(self, index: int) -> float:
        return self.started + index / self.fps

    def _jpeg(self, index: int) -> bytes:
        data = self._jpegs.get(index)
        if data is None:
            image = draw_index(index, self.size)
            data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            self._jpegs = {index: data}  # one cached: every client sends the frame of the moment
        return data

    def start(self) -> MjpegServer:
        server = self
        expected = None
        if self.credentials:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if expected and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.clients += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not server._stop.is_set():
                        if server.stalled.is_set():
                            server._stop.wait(0.05)
                            continue
                        index = int((time.time() - server.started) * server.fps)
                        data = server._jpeg(index)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(data) + data + b"\r\n")
                        self.wfile.flush()
                        pause = server.frame_time(index + 1) - time.time()
                        if pause > 0:
                            server._stop.wait(pause)
                except OSError:
                    pass

        self._stop.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open stream (the camera goes away)."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)


def rtsp_available(h264: bool = False) -> str | None:
    """None when tests/rtsp_server.py can run (with --h264: and encode H.264), else why not."""
    if not shutil.which(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON}"
    elements = ["jpegenc", "rtpjpegpay"] + (["x264enc", "rtph264pay"] if h264 else [])
    probe = subprocess.run([SYSTEM_PYTHON, "-c", (
        "import sys, gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        f"sys.exit(not all(Gst.ElementFactory.find(e) for e in {elements!r}))")],
        capture_output=True, text=True)
    if probe.returncode:
        return ("needs python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good"
                + (", gstreamer1.0-plugins-ugly" if h264 else "") + " (deploy/dev-setup.sh)")
    return None


class RtspServer:
    """tests/rtsp_server.py in a child process: rtsp://127.0.0.1:<port>/cam, 15 fps."""

    def __init__(self, port: int = 0, stamped: bool = False, h264: bool = False) -> None:
        self.port = port or free_port()
        self.stamped = stamped  # frames carry the time they were made (frame_stamp)
        self.h264 = h264  # H.264 instead of JPEG over RTP
        self._proc: subprocess.Popen[str] | None = None

    def url(self, user_info: str = "") -> str:
        at = f"{user_info}@" if user_info else ""
        return f"rtsp://{at}127.0.0.1:{self.port}/cam"

    def start(self) -> RtspServer:
        argv = [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port)]
        argv += ["--stamped"] * self.stamped + ["--h264"] * self.h264
        self._proc = subprocess.Popen(argv,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"rtsp server did not start on port {self.port}: {line!r}")
        return self

    def stop(self) -> None:
        """SIGKILL: the camera vanishes mid-stream without a goodbye."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


if __name__ == "__main__":  # a manual check: serve MJPEG until interrupted
    served = MjpegServer().start()
    print(served.url(), file=sys.stderr)
    threading.Event().wait()
