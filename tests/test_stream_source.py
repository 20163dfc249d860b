"""Network cameras (`type = "stream"`): real HTTP MJPEG and RTSP streams served on loopback.

The MJPEG camera is tests/stream_servers.py's MjpegServer (frame indices drawn into the frames, so
a test knows which frame it got and when the camera made it); the RTSP camera is gst-rtsp-server
(tests/rtsp_server.py). Cameras are killed mid-stream and brought back on the same port.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import digits_pipeline, edge_runtime, wait_until, write_config
from edge_runtime.sources.base import SourceContext, SourceError
from edge_runtime.sources.stream import StreamOptions, StreamSource, redact
from stream_servers import MjpegServer, RtspServer, frame_index, rtsp_available, stamp_age

PASSWORD = "s3cret-Pa55"


def stream(url: str, **options) -> StreamSource:
    settings = {"open_timeout": 5.0, "read_timeout": 2.0, **options}
    return StreamSource(StreamOptions(type="stream", url=url, **settings),
                        SourceContext(Path("."), "cam"))


def next_frame(source: StreamSource, timeout: float = 10.0):
    return wait_until(source.read, timeout)


@pytest.fixture
def mjpeg():
    servers: list[MjpegServer] = []

    def make(**kwargs) -> MjpegServer:
        servers.append(MjpegServer(**kwargs).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def test_redact_hides_credentials_and_secret_parameters():
    assert redact(f"rtsp://admin:{PASSWORD}@10.0.0.5:554/Streaming/101") == \
        "rtsp://***@10.0.0.5:554/Streaming/101"
    assert redact(f"http://10.0.0.5/cgi-bin/mjpg?user=admin&pwd={PASSWORD}&res=1") == \
        "http://10.0.0.5/cgi-bin/mjpg?user=admin&pwd=***&res=1"
    assert redact("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_config_errors_name_the_key_and_not_the_password(tmp_path):
    bad = digits_pipeline(name="cam")
    bad["source"] = {"type": "stream", "url": f"ftp://admin:{PASSWORD}@10.0.0.5/x"}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "a.toml", None, [bad])))
    assert done.returncode == 2
    assert "pipelines[0].source.url" in done.stderr and "ftp://***@10.0.0.5/x" in done.stderr
    assert PASSWORD not in done.stderr
    bad["source"] = {"type": "stream", "url": "rtsp://10.0.0.5/x", "transport": "http"}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "b.toml", None, [bad])))
    assert done.returncode == 2 and "pipelines[0].source.transport" in done.stderr
    bad["source"] = {"type": "camera", "device": f"rtsp://admin:{PASSWORD}@10.0.0.5/x"}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "c.toml", None, [bad])))
    assert done.returncode == 2 and "pipelines[0].source.device" in done.stderr
    assert 'type = "stream"' in done.stderr and PASSWORD not in done.stderr


def test_mjpeg_with_basic_auth_gives_frames_in_order_and_a_wrong_password_is_refused(mjpeg):
    camera = mjpeg(fps=20, credentials=("admin", PASSWORD))
    source = stream(camera.url(f"admin:{PASSWORD}"))
    source.open()
    try:
        indices = [frame_index(next_frame(source).data) for _ in range(5)]
    finally:
        source.close()
    assert indices == sorted(indices) and len(set(indices)) == 5
    wrong = stream(camera.url("admin:wrong-password"))
    wrong.open()
    try:
        with pytest.raises(SourceError) as refused:
            wait_until(lambda: wrong.read() and False, 20)
    finally:
        wrong.close()
    assert "http://***@127.0.0.1" in str(refused.value) and "wrong-password" not in str(refused.value)


def test_username_and_password_file_keep_the_password_out_of_the_config(mjpeg, tmp_path):
    awkward = "p@ss:w/rd%"  # percent-encoded into the URL when it is opened
    camera = mjpeg(fps=20, credentials=("viewer", awkward))
    secret = tmp_path / "camera-password"
    secret.write_text(awkward + "\n")
    source = StreamSource(StreamOptions(type="stream", url=camera.url(), username="viewer",
                                        password_file=secret, open_timeout=5.0),
                          SourceContext(tmp_path, "cam"))
    source.open()
    try:
        assert next_frame(source).data.shape == (120, 160, 3)
    finally:
        source.close()
    secret.write_text("rotated-and-wrong\n")  # read again at each open
    source.open()
    try:
        with pytest.raises(SourceError) as refused:
            wait_until(lambda: source.read() and False, 20)
    finally:
        source.close()
    assert "rotated-and-wrong" not in str(refused.value)
    pipeline = digits_pipeline(name="cam")
    pipeline["source"] = {"type": "stream", "url": camera.url(), "password_file": str(secret)}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "a.toml", None, [pipeline])))
    assert done.returncode == 2 and "pipelines[0].source.username" in done.stderr
    pipeline["source"].update(username="viewer", password_file=str(tmp_path / "missing"))
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "b.toml", None, [pipeline])))
    assert done.returncode == 2 and "pipelines[0].source.password_file" in done.stderr


def test_a_slow_model_gets_the_newest_frame_not_a_backlog(mjpeg):
    """Inference at ~3 frames/s on a 25 frames/s camera for 6 s: every frame handed over was made
    moments before (a reader that decodes on demand would fall seconds behind: the socket and
    FFmpeg buffer the stream; bench/bench_stream_age.py measures both)."""
    camera = mjpeg(fps=25)
    source = stream(camera.url())
    source.open()
    ages = []
    try:
        end = time.monotonic() + 6
        while time.monotonic() < end:
            frame = next_frame(source)
            ages.append(time.time() - camera.frame_time(frame_index(frame.data)))
            time.sleep(0.3)  # the slow model
        grabbed = source.frames_grabbed
    finally:
        source.close()
    # Frames older than a second would mean a backlog (the camera made 25 a second meanwhile).
    assert max(ages[2:]) < 1.0, ages
    assert grabbed > 4 * len(ages)  # the reader kept pace with the camera, not with the model


def test_a_camera_that_goes_away_is_an_error_and_reopens_when_back(mjpeg):
    camera = mjpeg(fps=20)
    source = stream(camera.url(), read_timeout=1.0)
    source.open()
    before = frame_index(next_frame(source).data)
    camera.stop()
    with pytest.raises(SourceError):  # promptly: the connection closed
        wait_until(lambda: source.read() and False, 10)
    source.close()
    source.open()
    with pytest.raises(SourceError):  # refused while it is away
        wait_until(lambda: source.read() and False, 10)
    source.close()
    camera.start()
    source.open()
    try:
        assert frame_index(next_frame(source).data) > before
    finally:
        source.close()


def test_a_stream_that_stalls_with_the_connection_open_is_an_error(mjpeg):
    """No frame for read_timeout seconds while the camera keeps the socket open (a hung
    camera): the read fails so the pipeline reopens it, rather than waiting forever."""
    camera = mjpeg(fps=20)
    source = stream(camera.url(), read_timeout=1.0)
    source.open()
    try:
        next_frame(source)
        camera.stalled.set()
        with pytest.raises(SourceError, match="127.0.0.1"):
            wait_until(lambda: source.read() and False, 20)
    finally:
        source.close()


def test_a_camera_that_accepts_and_never_answers_fails_without_blocking_the_source_thread():
    """A port that accepts connections and says nothing (a wedged camera): FFmpeg waits
    open_timeout on the reader thread; the source thread's reads come back empty meanwhile (it
    keeps beating its heartbeat), then fail; close() does not wait for FFmpeg either."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
    url = f"http://admin:{PASSWORD}@127.0.0.1:{silent.getsockname()[1]}/video.mjpg"
    try:
        source = stream(url, open_timeout=3.0)
        source.open()  # returns at once: connecting is the reader thread's job
        assert source.read() is None  # back after WAIT, not after FFmpeg's open_timeout
        with pytest.raises(SourceError) as failed:
            wait_until(lambda: source.read() and False, 30)
        assert PASSWORD not in str(failed.value)
        source.open()  # connecting again; close() while FFmpeg is inside its open
        source.close()
        threads = [t for t in threading.enumerate() if t.name == "stream-cam"]
        wait_until(lambda: not any(t.is_alive() for t in threads), 30)  # ends by itself
    finally:
        silent.close()


rtsp_missing = rtsp_available()


h264_missing = rtsp_available(h264=True)


@pytest.mark.parametrize("transport, h264", [
    pytest.param("tcp", False, marks=pytest.mark.skipif(rtsp_missing is not None, reason=str(rtsp_missing))),
    pytest.param("udp", False, marks=pytest.mark.skipif(rtsp_missing is not None, reason=str(rtsp_missing))),
    pytest.param("tcp", True, marks=pytest.mark.skipif(h264_missing is not None, reason=str(h264_missing))),
])
def test_rtsp_gives_a_slow_model_fresh_frames(transport, h264):
    """Frames carry the time they were made (rtsp_server.py --stamped), as JPEG over RTP on
    both transports and as H.264 (what IP cameras send): with a consumer at ~3 frames/s on a
    15 fps camera, none handed over is old, the first one included (the frames FFmpeg
    buffered while it probed the stream at open, 1.3-1.9 s of them, are skipped)."""
    server = RtspServer(stamped=True, h264=h264).start()
    try:
        source = stream(server.url(), transport=transport)
        source.open()
        frames, ages = [], []
        try:
            for _ in range(10):
                frames.append(next_frame(source))
                ages.append(stamp_age(frames[-1].data))
                time.sleep(0.3)  # the slow model
        finally:
            source.close()
    finally:
        server.stop()
    assert all(f.data.shape == (240, 320, 3) for f in frames)
    assert [f.index for f in frames] == list(range(10))
    assert max(ages) < 1.0, ages


@pytest.mark.skipif(rtsp_missing is not None, reason=rtsp_missing or "")
def test_rtsp_camera_killed_and_back_reconnects_while_another_pipeline_keeps_publishing(
        tmp_path, mosquitto, subscribe, start_daemon):
    server = RtspServer().start()
    camera = digits_pipeline(name="porch")
    camera["source"] = {"type": "stream", "url": server.url(f"admin:{PASSWORD}"),
                        "open_timeout": 3, "read_timeout": 2}
    other = digits_pipeline(name="door", loop=True, fps=20.0)
    config = write_config(tmp_path / "c.toml", mosquitto, [camera, other],
                          retry={"source": {"min_delay": 0.2, "max_delay": 1.0}},
                          stats={"interval": 1})
    sub = subscribe("edge/test-pi/#")
    daemon = start_daemon(config)
    try:
        wait_until(lambda: len(sub.on("edge/test-pi/porch/result")) >= 5, 60)
        server.stop()  # SIGKILL mid-stream
        wait_until(lambda: "pipeline porch: source failed" in daemon.log, 30)
        door_at_outage = len(sub.on("edge/test-pi/door/result"))
        porch_at_outage = len(sub.on("edge/test-pi/porch/result"))
        # While the camera is away the other pipeline never notices.
        wait_until(lambda: len(sub.on("edge/test-pi/door/result")) > door_at_outage + 20, 30)
        assert daemon.log.count("pipeline porch: source failed") >= 2  # retried, still away
        assert len(sub.on("edge/test-pi/porch/result")) == porch_at_outage
        server = RtspServer(server.port).start()  # back on the same address
        wait_until(lambda: len(sub.on("edge/test-pi/porch/result")) > porch_at_outage + 5, 60)

        def porch_stats() -> dict:
            stats = [json.loads(m) for m in sub.on("edge/test-pi/stats")]
            return stats[-1]["pipelines"]["porch"] if stats else {}

        wait_until(lambda: porch_stats().get("source_reconnects", 0) >= 1, 30)
        assert porch_stats()["source_failures"] >= 2
        door = [json.loads(m) for m in sub.on("edge/test-pi/stats")][-1]["pipelines"]["door"]
        assert door["source_failures"] == 0 and door["source_reconnects"] == 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.log
    finally:
        server.stop()
    seqs = [r["seq"] for r in sub.json_on("edge/test-pi/porch/result")]
    assert seqs == list(range(len(seqs)))
    # said when frames come (first connect, reconnect), not at each attempt to open
    assert daemon.log.count("pipeline porch: source delivering frames") == 2, daemon.log
    assert "rtsp://***@127.0.0.1" in daemon.log
    everything = daemon.log + "".join(p.decode(errors="replace") for _, p, _ in sub.messages)
    assert PASSWORD not in everything
