"""An RTSP server on loopback for the network camera tests: GStreamer's gst-rtsp-server.

Run with Debian's Python (python3-gi, gir1.2-gst-rtsp-server-1.0; deploy/dev-setup.sh installs
them): `/usr/bin/python3 tests/rtsp_server.py PORT [--stamped] [--h264]`. Serves
rtsp://127.0.0.1:PORT/cam, a live 160x120 picture at 15 fps, JPEG over RTP (--h264: H.264, as
most IP cameras send; needs gstreamer1.0-plugins-ugly), over TCP or UDP as the client asks;
prints "ready" once it listens and runs until killed.

--stamped: 320x240 frames made in Python, each carrying the wall time it was made (milliseconds,
modulo 2**32) as a bar code of 32 blocks across the top half (tests/stream_servers.py reads it),
so a reader on the same machine knows each frame's age. Otherwise videotestsrc's moving ball.
"""

import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

FPS = 15
JPEG = "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26"
# What most IP cameras send: H.264 (gstreamer1.0-plugins-ugly's x264enc), a key frame every second.
H264 = (f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={FPS} bitrate=800 ! "
        "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1")
TEST_PICTURE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,"
                f"height=120,framerate={FPS}/1 ! {{codec}} )")
STAMPED_SIZE = (320, 240)
STAMPED = ("( appsrc name=src is-live=true format=time do-timestamp=true "
           f"caps=video/x-raw,format=I420,width={STAMPED_SIZE[0]},height={STAMPED_SIZE[1]},"
           f"framerate={FPS}/1 ! {{codec}} )")
BITS = 32


def stamped_frame(millis: int) -> bytes:
    """An I420 frame: the luma's top half is `millis` in BITS black/white blocks, chroma grey."""
    width, height = STAMPED_SIZE
    block = width // BITS
    row = bytearray(width)
    for bit in range(BITS):
        row[bit * block:(bit + 1) * block] = (b"\xff" if millis >> bit & 1 else b"\x00") * block
    luma = bytes(row) * (height // 2) + b"\x50" * (width * (height - height // 2))
    return luma + b"\x80" * (width * height // 2)


def feed(src, _length) -> None:
    """appsrc wants data: one frame at the next frame time, stamped when it is made."""
    now = time.time()
    wait = feed.next_at - now
    if wait > 0:
        time.sleep(wait)
    feed.next_at = max(now, feed.next_at) + 1 / FPS
    data = stamped_frame(int(time.time() * 1000) % 2**BITS)
    src.emit("push-buffer", Gst.Buffer.new_wrapped(data))


feed.next_at = 0.0


def configure(_factory, media) -> None:
    media.get_element().get_by_name_recurse_up("src").connect("need-data", feed)


def main() -> None:
    Gst.init(None)
    stamped = "--stamped" in sys.argv[2:]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    codec = H264 if "--h264" in sys.argv[2:] else JPEG
    factory.set_launch((STAMPED if stamped else TEST_PICTURE).format(codec=codec))
    factory.set_shared(True)
    if stamped:
        factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {sys.argv[1]}")
    print("ready", flush=True)
    GLib.MainLoop().run()


main()
