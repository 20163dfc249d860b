"""An RTSP server on loopback for the network camera tests: GStreamer's gst-rtsp-server.

Run with Debian's Python (python3-gi, gir1.2-gst-rtsp-server-1.0; deploy/dev-setup.sh installs
them): `/usr/bin/python3 tests/rtsp_server.py PORT`. Serves rtsp://127.0.0.1:PORT/cam, a live
test picture (160x120, 15 fps, JPEG over RTP) over TCP or UDP as the client asks; prints "ready"
once it listens and runs until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,height=120,"
            "framerate=15/1 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )")


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {sys.argv[1]}")
    print("ready", flush=True)
    GLib.MainLoop().run()


main()
