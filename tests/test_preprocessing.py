"""Preprocessing against hand-computed expectations: color, resize modes, normalization, quantization."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import (
    ImagePreprocessor,
    PreprocessError,
    PreprocessSpec,
    SensorPreprocessor,
)


def tensor(shape, dtype=np.float32, scale=0.0, zero_point=0) -> TensorSpec:
    return TensorSpec("input", 0, tuple(shape), np.dtype(dtype), scale, zero_point)


def run(spec: PreprocessSpec, spec_tensor: TensorSpec, frame: np.ndarray):
    out = np.zeros(spec_tensor.shape, spec_tensor.dtype)
    geometry = ImagePreprocessor(spec, spec_tensor)(frame, out)
    return out, geometry


def test_bgr_frame_becomes_rgb_normalized_float():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in OpenCV's BGR order
    spec = PreprocessSpec(color="rgb", mean=(127.5,), std=(127.5,))
    out, _ = run(spec, tensor((1, 4, 4, 3)), frame)
    assert np.allclose(out[0, :, :, 2], 1.0) and np.allclose(out[0, :, :, :2], -1.0)
    out, _ = run(PreprocessSpec(color="bgr"), tensor((1, 4, 4, 3)), frame)
    assert np.allclose(out[0, :, :, 0], 255.0)


def test_int8_input_uses_the_tensor_scale_and_zero_point():
    frame = np.full((2, 2, 3), 200, np.uint8)
    out, _ = run(PreprocessSpec(color="gray", std=(255.0,)), tensor((1, 2, 2, 1), np.int8,
                                                                     scale=1 / 255, zero_point=-128), frame)
    # real value 200/255 -> q = 200/255 / (1/255) - 128 = 72
    assert out.dtype == np.int8 and np.all(out == 72)


def test_quantized_values_saturate_instead_of_wrapping():
    frame = np.full((2, 2, 3), 255, np.uint8)
    out, _ = run(PreprocessSpec(color="gray"), tensor((1, 2, 2, 1), np.int8, 0.5, 0), frame)
    assert np.all(out == 127)


def test_uint8_model_gets_pixels_unchanged():
    frame = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    out, _ = run(PreprocessSpec(color="bgr"), tensor((1, 4, 4, 3), np.uint8), frame)
    assert np.array_equal(out[0], frame)


def test_nchw_layout():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 2] = 9  # red
    out, _ = run(PreprocessSpec(color="rgb", layout="nchw"), tensor((1, 3, 2, 2)), frame)
    assert np.all(out[0, 0] == 9) and np.all(out[0, 1:] == 0)


def test_letterbox_pads_and_maps_back_exactly():
    frame = np.full((100, 200, 3), 255, np.uint8)  # wide frame into a square input
    out, geometry = run(PreprocessSpec(color="gray", resize="letterbox"), tensor((1, 50, 50, 1)), frame)
    # 200x100 scaled to 50x25, centered vertically: rows 12..36 are image, the rest padding
    assert np.all(out[0, :12] == 0) and np.all(out[0, 12:37] == 255) and np.all(out[0, 37:] == 0)
    # The input's corner of the image region maps to the frame's corner.
    assert geometry.to_frame(0.0, 12 / 50) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert geometry.to_frame(1.0, 37 / 50) == pytest.approx((1.0, 1.0), abs=1e-6)
    # 12 rows of padding above, 13 below: the input centre is 13 of 25 image rows down.
    assert geometry.to_frame(0.5, 0.5) == pytest.approx((0.5, 13 / 25))


def test_letterbox_mediapipe_samples_corner_aligned_with_fractional_bars():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (100, 256, 3), dtype=np.uint8)  # 256x100 into 128x128
    spec = PreprocessSpec(color="bgr", resize="letterbox-mediapipe")
    out, geometry = run(spec, tensor((1, 128, 128, 3)), frame)
    # scale 0.5; the 50 image rows start at (128 - 50) / 2 = 39: input (x, y) samples frame
    # (2x, 2(y - 39)) exactly, no half-pixel shift (plain letterbox would average neighbours)
    for x, y in [(0, 39), (10, 40), (127, 88), (64, 60)]:
        np.testing.assert_array_equal(out[0, y, x], frame[2 * (y - 39), 2 * x])
    assert not out[0, :38].any() and not out[0, 90:].any()
    plain, _ = run(PreprocessSpec(color="bgr", resize="letterbox"), tensor((1, 128, 128, 3)), frame)
    assert not np.array_equal(plain[0, 40, 10], frame[2, 20])
    assert geometry.to_frame(0.0, 39 / 128) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert geometry.to_frame(0.5, 0.5) == pytest.approx((0.5, 0.5), abs=1e-6)  # fractional bars
    assert geometry.to_frame(1.0, 89 / 128) == pytest.approx((1.0, 1.0), abs=1e-6)


def test_center_crop_keeps_the_middle_and_maps_back():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 50:150] = 255  # the centered square is white, the sides black
    out, geometry = run(PreprocessSpec(color="gray", resize="center-crop"), tensor((1, 10, 10, 1)), frame)
    assert np.all(out == 255)
    assert geometry.to_frame(0.0, 0.0) == pytest.approx((0.25, 0.0))
    assert geometry.to_frame(1.0, 1.0) == pytest.approx((0.75, 1.0))


def test_stretch_geometry_is_proportional():
    frame = np.zeros((30, 60, 3), np.uint8)
    _, geometry = run(PreprocessSpec(color="gray"), tensor((1, 10, 10, 1)), frame)
    assert geometry.to_frame(0.3, 0.7) == pytest.approx((0.3, 0.7))


def test_channel_mismatch_is_refused_up_front():
    with pytest.raises(PreprocessError, match="color 'gray' gives 1 channel"):
        ImagePreprocessor(PreprocessSpec(color="gray"), tensor((1, 8, 8, 3)))
    with pytest.raises(PreprocessError, match="not an image"):
        ImagePreprocessor(PreprocessSpec(), tensor((1, 10)))


def test_bad_frames_are_rejected_with_a_reason():
    pre = ImagePreprocessor(PreprocessSpec(color="gray"), tensor((1, 4, 4, 1)))
    out = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(PreprocessError, match="8-bit image"):
        pre(np.zeros((4, 4, 3), np.float32), out)
    with pytest.raises(PreprocessError, match="8-bit image"):
        pre(np.zeros((0, 4, 3), np.uint8), out)


def test_sensor_window_normalized_and_reshaped():
    spec = PreprocessSpec(mean=(1.0, 2.0), std=(2.0, 4.0))
    pre = SensorPreprocessor(spec, tensor((1, 6)), window=3, columns=2)
    out = np.zeros((1, 6), np.float32)
    pre(np.array([[1, 2], [3, 6], [5, 10]], np.float32), out)
    assert np.allclose(out, [[0, 0, 1, 1, 2, 2]])
    with pytest.raises(PreprocessError, match="NaN or infinite"):
        pre(np.array([[1, 2], [np.nan, 6], [5, 10]], np.float32), out)
    with pytest.raises(PreprocessError, match="takes 6"):
        SensorPreprocessor(spec, tensor((1, 6)), window=4, columns=2)


@pytest.mark.parametrize("color", ["rgb", "bgr", "gray"])
@pytest.mark.parametrize("dtype,scale,zero_point", [
    (np.uint8, 1 / 127.5, 127), (np.int8, 1 / 128, -1), (np.int8, 0.01, 3), (np.float32, 0.0, 0)])
@pytest.mark.parametrize("mean,std", [((127.5,), (127.5,)), ((0.0,), (255.0,)),
                                      ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4))])
def test_lookup_table_matches_the_elementwise_normalization(color, dtype, scale, zero_point,
                                                            mean, std):
    channels = 1 if color == "gray" else 3
    if channels == 1 and len(mean) == 3:
        mean, std = mean[:1], std[:1]
    spec_tensor = tensor((1, 20, 24, channels), dtype, scale, zero_point)
    pre = ImagePreprocessor(PreprocessSpec(color=color, mean=mean, std=std), spec_tensor)
    assert pre._lut is not None  # noqa: SLF001 - white-box: nhwc uses the table
    frame = np.random.default_rng(1).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    frame[0, :16, 0] = [0, 1, 2, 127, 128, 129, 254, 255, 0, 63, 64, 65, 191, 192, 193, 200]
    with_table = np.zeros(spec_tensor.shape, dtype)
    pre(frame, with_table)
    pre._lut = None  # noqa: SLF001 - the element-wise path, kept for nchw
    elementwise = np.zeros(spec_tensor.shape, dtype)
    pre(frame, elementwise)
    assert np.array_equal(with_table, elementwise)
    assert len(np.unique(with_table)) > 10  # the comparison saw real variety, not a constant


def test_sensor_window_with_huge_finite_values_is_accepted():
    # float32 sums of values near its maximum overflow; the window itself is fine.
    pre = SensorPreprocessor(PreprocessSpec(), tensor((1, 4)), window=2, columns=2)
    out = np.zeros((1, 4), np.float32)
    pre(np.full((2, 2), 3e38, np.float32), out)
    assert np.all(out == np.float32(3e38))
    with pytest.raises(PreprocessError, match="NaN or infinite"):
        pre(np.array([[3e38, 3e38], [np.inf, 1]], np.float32), out)


def test_the_lookup_table_saturates_like_the_elementwise_path():
    spec_tensor = tensor((1, 8, 8, 3), np.int8, 1 / 128, -1)
    pre = ImagePreprocessor(PreprocessSpec(mean=(127.5,), std=(127.5,)), spec_tensor)
    out = np.zeros(spec_tensor.shape, np.int8)
    frame = np.full((16, 16, 3), 255, np.uint8)
    pre(frame, out)
    assert np.all(out == 127)  # (255 - 127.5) / 127.5 = 1.0 -> 1 / (1/128) - 1, saturated
    pre(np.zeros((16, 16, 3), np.uint8), out)
    assert np.all(out == -128)  # -1.0 -> -129 -> saturated at -128
