"""Frame age from a network camera when the model is slower than the stream.

    python bench/bench_stream_age.py [--protocol mjpeg|rtsp] [--h264] [--seconds 60] [--fps 25]
                                     [--model-ms 300] [--size 640x480]

A live camera on loopback is read at the same time, each over its own connection, by several
readers, each taking one frame per --model-ms (a model, or `fps` pacing, slower than the camera).
`mjpeg`: HTTP MJPEG from tests/stream_servers.py (frame i is made at start + i/fps and carries i
as a bar code; --fps and --size apply). `rtsp`: gst-rtsp-server (tests/rtsp_server.py --stamped:
320x240 at 15 fps, JPEG over RTP or with --h264 H.264, each frame carrying the wall time it was
made), read over TCP and, by the `stream` source, over UDP too. The readers:

- `stream`: the `stream` source (edge_runtime/sources/stream.py): a reader thread grabs every
  frame, the newest is converted and handed over (RTSP: also `stream-udp` over UDP and
  `stream-dec0` with `decode_threads = 0`, FFmpeg's own thread count);
- `on-demand`: cv2.VideoCapture(url).read() when the model wants a frame (what the `camera`
  source did with a URL): FFmpeg and the socket queue what the model has not taken;
- `ffmpeg-pipe`: the `command` source running `ffmpeg -i URL -c:v copy -f mjpeg -` (its stdout
  drained by a reader thread, the newest JPEG kept).

The age of a frame is the wall time when the reader returned it minus the time the camera made
it. Prints per reader the median, 95th percentile and maximum age and the age over the last
tenth of the run (a backlog grows; a bounded reader stays flat), plus the ratio of each reader's
median to the `stream` source's, and the process CPU while all three ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from edge_runtime.sources.base import SourceContext  # noqa: E402
from edge_runtime.sources.command_source import CommandOptions, CommandSource  # noqa: E402
from edge_runtime.sources.stream import StreamOptions, StreamSource  # noqa: E402
from stream_servers import MjpegServer, RtspServer, frame_index, stamp_age  # noqa: E402


class OnDemand:
    def __init__(self, url: str) -> None:
        self.capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)

    def read(self):
        ok, image = self.capture.read()
        return image if ok else None

    def close(self) -> None:
        self.capture.release()


class Adapted:
    """A Source (stream or command) read until it gives a frame."""

    def __init__(self, source) -> None:
        self.source = source
        source.open()

    def read(self):
        while True:
            frame = self.source.read()
            if frame is not None:
                return frame.data

    def close(self) -> None:
        self.source.close()


def run_reader(name: str, reader, age_of, seconds: float, period: float,
               ages: dict[str, list[tuple[float, float]]]) -> None:
    start = time.monotonic()
    samples = ages[name]
    try:
        while time.monotonic() - start < seconds:
            image = reader.read()
            if image is None:
                break
            samples.append((time.monotonic() - start, age_of(image)))
            time.sleep(period)  # the slow model
    finally:
        reader.close()


def summary(samples: list[tuple[float, float]], seconds: float) -> dict[str, float]:
    values = sorted(age for _, age in samples)
    last = [age for t, age in samples if t >= seconds * 0.9] or [float("nan")]
    return {"n": len(values), "median": statistics.median(values),
            "p95": values[int(0.95 * (len(values) - 1))], "max": values[-1],
            "last_tenth": statistics.median(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("mjpeg", "rtsp"), default="mjpeg")
    parser.add_argument("--h264", action="store_true", help="rtsp: H.264 instead of JPEG over RTP")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--model-ms", type=float, default=300.0)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    ctx = SourceContext(REPO, "bench")
    if args.protocol == "mjpeg":
        server = MjpegServer(fps=args.fps, size=(width, height)).start()
        url = server.url()
        camera = f"HTTP MJPEG {width}x{height} at {args.fps:g} fps"

        def age_of(image) -> float:
            return time.time() - server.frame_time(frame_index(image))
    else:
        server = RtspServer(stamped=True, h264=args.h264).start()
        url = server.url()
        camera = f"RTSP ({'H.264' if args.h264 else 'JPEG'} over RTP) 320x240 at 15 fps"
        age_of = stamp_age
    pipe = ["ffmpeg", "-loglevel", "error"] + (["-rtsp_transport", "tcp"] if args.protocol == "rtsp" else [])
    readers = {"stream": Adapted(StreamSource(StreamOptions(type="stream", url=url), ctx))}
    if args.protocol == "rtsp":
        readers["stream-udp"] = Adapted(StreamSource(StreamOptions(type="stream", url=url,
                                                                   transport="udp"), ctx))
        readers["stream-dec0"] = Adapted(StreamSource(StreamOptions(type="stream", url=url,
                                                                    decode_threads=0), ctx))
    readers["on-demand"] = OnDemand(url)
    codec = ["-c:v", "mjpeg", "-q:v", "4"] if args.h264 else ["-c:v", "copy"]  # re-encode H.264
    readers["ffmpeg-pipe"] = Adapted(CommandSource(CommandOptions(
        type="command", format="mjpeg", command=(*pipe, "-i", url, *codec, "-f", "mjpeg", "-")), ctx))
    ages: dict[str, list[tuple[float, float]]] = {name: [] for name in readers}
    cpu_before = time.process_time()
    wall_before = time.monotonic()
    threads = [threading.Thread(target=run_reader, name=f"bench-{name}",
                                args=(name, reader, age_of, args.seconds, args.model_ms / 1000, ages))
               for name, reader in readers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
    server.stop()
    print(f"camera: {camera}, model {args.model_ms:g} ms/frame, {args.seconds:g} s, "
          f"{len(readers)} readers side by side (this process: {cpu:.2f} cores)")
    base = summary(ages["stream"], args.seconds)
    for name, samples in ages.items():
        if not samples:
            print(f"  {name:12s} no frames")
            continue
        s = summary(samples, args.seconds)
        print(f"  {name:12s} frames {s['n']:4d}  age median {s['median']:6.3f} s  p95 {s['p95']:6.3f}"
              f"  max {s['max']:6.3f}  last tenth {s['last_tenth']:6.3f}"
              f"  median / stream {s['median'] / base['median']:6.1f}x")


if __name__ == "__main__":
    main()
