"""One broken pipeline is retried on its own while the others keep publishing."""

from __future__ import annotations

import signal

import cv2
import numpy as np

from conftest import digits_pipeline, wait_until, write_config


def test_a_missing_camera_is_retried_while_other_pipelines_run(tmp_path, mosquitto, subscribe,
                                                                 start_daemon):
    sub = subscribe("edge/test-pi/#")
    camera = digits_pipeline(name="porch")
    camera["source"] = {"type": "camera", "device": str(tmp_path / "video-gone")}
    config = write_config(tmp_path / "c.toml", mosquitto,
                          [camera, digits_pipeline(name="door", loop=True, fps=20.0)])
    daemon = start_daemon(config)
    wait_until(lambda: len(sub.on("edge/test-pi/door/result")) >= 10, 30)
    wait_until(lambda: daemon.log.count("pipeline porch: source failed") >= 2, 30)
    assert daemon.process.poll() is None
    assert sub.on("edge/test-pi/porch/result") == []
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def test_a_camera_that_stops_delivering_is_reopened(tmp_path, mosquitto, subscribe, start_daemon):
    # A short clip stands in for a camera: when it runs dry the source fails like an unplugged
    # camera, and the pipeline reopens it after a backoff and carries on.
    clip = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for _ in range(3):
        writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    pipeline = digits_pipeline(name="cam")
    pipeline["source"] = {"type": "camera", "device": str(clip)}
    sub = subscribe("edge/test-pi/cam/result")
    daemon = start_daemon(write_config(tmp_path / "c.toml", mosquitto, [pipeline]))
    wait_until(lambda: len(sub.on("edge/test-pi/cam/result")) >= 6, 30)  # two openings at least
    assert "stopped delivering frames" in daemon.log
    seqs = [r["seq"] for r in sub.json_on("edge/test-pi/cam/result")]
    assert seqs == list(range(len(seqs)))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def test_status_is_online_again_after_the_broker_restarts(tmp_path, mosquitto, subscribe,
                                                          start_daemon):
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline(loop=True, fps=5.0)])
    daemon = start_daemon(config)
    first = subscribe("edge/test-pi/status")
    wait_until(lambda: first.on("edge/test-pi/status") == [b"online"], 30)
    first.close()
    mosquitto.restart()  # no persistence: the retained status is gone with the old broker
    again = subscribe("edge/test-pi/status")
    wait_until(lambda: again.on("edge/test-pi/status")[-1:] == [b"online"], 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
