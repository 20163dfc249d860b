"""Sources and the frame hand-over: real files, real broker, garbage inputs."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.sources.base import EndOfStream, Frame, SourceContext
from edge_runtime.sources.image_decode import jpeg_size, read_image, reduction_factor
from edge_runtime.sources.images import ImagesOptions, ImagesSource
from edge_runtime.sources.mqtt_source import parse_sensor_payload
from edge_runtime.sources.video import VideoOptions, VideoSource
from edge_runtime.sources.windowing import SensorDataError, csv_windows


def test_live_slot_keeps_only_the_newest_frame_and_counts_drops():
    slot = FrameSlot(live=True)
    for i in range(5):
        assert slot.put(Frame(np.zeros(1), i), timeout=0)
    assert slot.get(0).index == 4
    assert slot.dropped == 4


def test_file_slot_waits_instead_of_dropping():
    slot = FrameSlot(live=False)
    assert slot.put(Frame(np.zeros(1), 0), timeout=0)
    assert not slot.put(Frame(np.zeros(1), 1), timeout=0.05)
    got = []
    consumer = threading.Thread(target=lambda: got.extend([slot.get(5), slot.get(5)]))
    consumer.start()
    assert slot.put(Frame(np.zeros(1), 1), timeout=5)
    consumer.join(5)
    assert [f.index for f in got] == [0, 1] and slot.dropped == 0


def test_sensor_slot_buffers_in_order_and_wakes_the_source_per_batch():
    slot = FrameSlot(live=False, capacity=4)
    for i in range(4):
        assert slot.put(Frame(np.zeros(1), i), timeout=0)
    assert slot.ready and not slot.put(Frame(np.zeros(1), 4), timeout=0.05)  # full: the file waits
    assert [slot.get(0).index for _ in range(3)] == [0, 1, 2]
    assert slot.put(Frame(np.zeros(1), 4), timeout=0)
    slot.finish()
    assert [slot.get(0).index for _ in range(2)] == [3, 4]
    assert slot.get(5) is None and slot.finished and not slot.ready


def test_live_sensor_slot_drops_the_oldest():
    slot = FrameSlot(live=True, capacity=3)
    for i in range(5):
        slot.put(Frame(np.zeros(1), i), timeout=0)
    assert [slot.get(0).index for _ in range(3)] == [2, 3, 4] and slot.dropped == 2


def test_blocked_source_resumes_when_the_worker_drains_the_slot():
    slot = FrameSlot(live=False, capacity=8)
    produced = threading.Thread(target=lambda: [slot.put(Frame(np.zeros(1), i), 5)
                                                for i in range(50)] and slot.finish())
    produced.start()
    got = []
    while (frame := slot.get(5)) is not None:
        got.append(frame.index)
    produced.join(5)
    assert got == list(range(50))


def jpeg(path, width, height):
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)  # left half red, right half black
    cv2.imwrite(str(path), image)
    return path


def test_jpeg_header_size_and_reduced_decode(tmp_path):
    path = jpeg(tmp_path / "cam.jpg", 641, 479)
    assert jpeg_size(path.read_bytes()) == (641, 479)
    assert jpeg_size(b"\x89PNG....") is None and jpeg_size(b"\xff\xd8 truncated") is None
    image, size = read_image(path, (224, 224))
    assert image.shape == (240, 321, 3) and size == (641, 479)  # 1/2: still >= 224 each way
    image, size = read_image(path, (300, 300))  # half would be too small in height
    assert image.shape == (479, 641, 3) and size == (641, 479)
    image, _ = read_image(jpeg(tmp_path / "big.jpg", 4000, 3000), (224, 224))
    assert image.shape == (375, 500, 3)  # 1/8
    assert reduction_factor((640, 480), (0, 0)) == 1
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(path.read_bytes()[:200])
    for bad in ("empty.jpg", "cut.jpg", "missing.jpg"):
        assert read_image(tmp_path / bad, (224, 224))[0] is None, bad


def test_images_source_decodes_large_jpegs_reduced_but_reports_the_full_size(tmp_path):
    jpeg(tmp_path / "a.jpg", 640, 480)
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((480, 640, 3), np.uint8))
    ctx = SourceContext(tmp_path, "p", image_size=(224, 224))
    source = ImagesSource(ImagesOptions("images", str(tmp_path)), ctx)
    source.open()
    a, b = source.read(), source.read()
    assert a.data.shape == (240, 320, 3) and (a.width, a.height) == (640, 480)
    assert b.data.shape == (480, 640, 3) and (b.width, b.height) == (640, 480)  # PNG: never
    full = ImagesSource(ImagesOptions("images", str(tmp_path), reduced_decode=False), ctx)
    full.open()
    assert full.read().data.shape == (480, 640, 3)


def test_reduced_decode_maps_boxes_back_to_the_same_frame_coordinates(tmp_path):
    """Normalized output coordinates do not depend on the size the JPEG was decoded at."""
    from edge_runtime.model.tflite_model import TensorSpec
    from edge_runtime.preprocessing import ImagePreprocessor, PreprocessSpec

    path = jpeg(tmp_path / "a.jpg", 640, 480)
    spec = TensorSpec("input", 0, (1, 224, 224, 3), np.dtype(np.uint8), 0.0, 0)
    for resize in ("letterbox", "center-crop", "stretch"):
        pre = ImagePreprocessor(PreprocessSpec(resize=resize), spec)
        corners = []
        for target in ((224, 224), None):
            image, _ = read_image(path, target)
            out = np.zeros(spec.shape, np.uint8)
            geometry = pre(image, out)
            corners.append([geometry.to_frame(x, y) for x, y in ((0.1, 0.2), (0.5, 0.5), (1, 1))])
            # the red edge lands on the same model-input column either way
            red = out[0, 112, :, 0] > 128
            corners[-1].append(int(np.argmin(red)))
        reduced, full = corners
        assert np.allclose(np.array(reduced[:3]), np.array(full[:3]), atol=1 / 320), resize
        assert abs(reduced[3] - full[3]) <= 1, resize


def test_images_source_skips_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((4, 4, 3), np.uint8))
    source = ImagesSource(ImagesOptions("images", str(tmp_path)), SourceContext(tmp_path, "p"))
    source.open()
    names = [source.read().name, source.read().name]
    with pytest.raises(EndOfStream):
        source.read()
    assert names == ["a.png", "c.png"] and source.input_errors() == 1


def test_video_file_source_reads_every_frame_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    source = VideoSource(VideoOptions("video", str(path), loop=True), SourceContext(tmp_path, "p"))
    source.open()
    frames = [source.read() for _ in range(8)]
    assert frames[0].data.shape == (24, 32, 3)
    assert abs(int(frames[6].data.mean()) - int(frames[0].data.mean())) < 5  # looped to the start
    source.close()


@pytest.mark.parametrize("payload,rows", [
    (b"1.5", [[1.5]]),
    (b'{"x": 1, "y": 2}', [[1, 2]]),
    (b"[1, 2]", [[1, 2]]),
    (b'[{"x": 1, "y": 2}, {"x": 3, "y": 4}]', [[1, 2], [3, 4]]),
])
def test_sensor_payload_forms(payload, rows):
    columns = ("x",) if rows[0] == [1.5] else ("x", "y")
    assert [r.tolist() for r in parse_sensor_payload(payload, columns)] == rows


@pytest.mark.parametrize("payload,reason", [
    (b"\xff\xfe", "neither JSON nor a number"),
    (b"hello", "neither JSON nor a number"),
    (b'{"x": 1}', "no key 'y'"),
    (b'{"x": "1", "y": 2}', "not a number"),
    (b"[1, 2, 3]", "3 values, expected 2"),
    (b'{"x": NaN, "y": 2}', "not finite"),
    (b'{"x": true, "y": 2}', "not a number"),
])
def test_sensor_payload_garbage_is_rejected(payload, reason):
    with pytest.raises(SensorDataError, match=reason):
        parse_sensor_payload(payload, ("x", "y"))


def test_csv_windows_name_the_bad_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,2\n3,4\n5,oops\n")
    with pytest.raises(SensorDataError, match=r"s.csv:4: 'oops' is not a number"):
        list(csv_windows(path, ["a", "b"], window=2))
    with pytest.raises(SensorDataError, match="no column 'c'"):
        list(csv_windows(path, ["a", "c"], window=2))
