"""Every preprocessing setting given to edge-convert reaches the daemon through the model file.

A tiny NCHW-shaped Keras model is converted with a non-default value for every PreprocessSpec
field (interpolation included); the daemon, configured with nothing but the model path, then
feeds the model exactly what those settings produce (issue 11).
"""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main
from edge_runtime.model.metadata import read_model_metadata
from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import ImagePreprocessor, PreprocessSpec
from edge_runtime.sources.images import ImageFileDecoder
from test_input_path import daemon_parts, daemon_tensors, photo

pytestmark = pytest.mark.slow

# Each field of PreprocessSpec with a value other than its default (a 1-channel 8x8 NCHW input).
NON_DEFAULT = {"color": "gray", "resize": "letterbox", "mean": (3.0,), "std": (2.0,),
               "layout": "nchw", "interpolation": "area"}


def cli_value(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.fixture(scope="module")
def nchw_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((1, 8, 8), name="image"),  # channels first: [1, C=1, H=8, W=8]
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    path = tmp_path_factory.mktemp("nchw") / "tiny.keras"
    model.save(path)
    return path


def test_every_preprocessing_option_round_trips_to_the_daemon(nchw_model, tmp_path, caplog):
    assert set(NON_DEFAULT) == {f.name for f in fields(PreprocessSpec)}, \
        "a new preprocessing setting needs a value here"
    default = PreprocessSpec()
    assert all(getattr(default, name) != value for name, value in NON_DEFAULT.items())
    expected = PreprocessSpec(**NON_DEFAULT)

    images = tmp_path / "images"
    photo(images / "a.jpg")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n\ndog\n")  # class 1 has no name
    output = tmp_path / "tiny.tflite"
    args = [nchw_model, "-o", output, "--validation-data", images, "--labels", labels,
            "--no-progress"]
    for name, value in NON_DEFAULT.items():
        args += [f"--{name}", cli_value(value)]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), caplog.at_level(logging.WARNING):
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()
    assert "--labels" in caplog.text and "1 blank label(s), class index 1" in caplog.text
    caplog.clear()

    meta = read_model_metadata(output.read_bytes())
    assert meta.preprocess == expected.to_dict()
    assert meta.labels == ("cat", "", "dog")

    # The daemon, told only the model path, preprocesses with every one of those settings: its
    # tensor is what the expected spec gives for the frame it decoded, and the default spec
    # (or any single setting left at its default) gives something else.
    with caplog.at_level(logging.WARNING):
        parts = daemon_parts(tmp_path, output, {"type": "images", "path": str(images)})
    assert "1 blank label(s), class index 1" in caplog.text
    device, frames = daemon_tensors(parts)
    tensor: TensorSpec = parts.model.inputs[0]
    assert tensor.shape == (1, 1, 8, 8)
    frame = ImageFileDecoder((8, 8)).frame(images / "a.jpg", 0)  # 640x480 decoded at 1/8
    assert frame is not None and np.array_equal(frame.data, frames[0].data)
    assert frames[0].full_size == (640, 480)

    def preprocessed(spec: PreprocessSpec) -> bytes:
        out_ = np.zeros(tensor.shape, tensor.dtype)
        ImagePreprocessor(spec, tensor)(frames[0].data, out_)
        return out_[0].tobytes()

    assert device.tobytes() == preprocessed(expected)
    for name in ("resize", "mean", "std", "interpolation"):
        changed = PreprocessSpec(**{**NON_DEFAULT, name: getattr(default, name)})
        assert preprocessed(changed) != device.tobytes(), f"{name} makes no difference here"
    # color and layout decide the tensor's shape: rgb or nhwc would not fit [1, 1, 8, 8] at all.
