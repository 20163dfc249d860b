"""One input path: for the same JPEG, CSV and labels file, edge-convert's calibration tensors and
class names are the daemon's, byte for byte and index for index (issue 11).

Each side is driven through its real entry points: the converter from its command line
(build_parser -> Options -> input settings -> load_dataset / read_label_names), the daemon from a
config file (load_config -> assemble -> the pipeline's source and preprocess / postprocess).
"""

from __future__ import annotations

import logging
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import DIGITS_INT8, REPO, VIBRATION_MODEL, write_config
from converters.cli import build_parser, options_from_args
from converters.inputs import input_settings, read_label_names
from converters.data import load_dataset
from converters.errors import ConvertError
from converters.loaders import SourceModel
from converters.progress import Progress
from edge_runtime.app_config import load_config
from edge_runtime.config.schema import PreprocessConfig
from edge_runtime.config.typed import ConfigError
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TfliteModel
from edge_runtime.pipeline.assembly import AUDIO_KEYS, PipelineParts, assemble
from edge_runtime.preprocessing import PreprocessSpec
from edge_runtime.preprocessing.audio import FEATURES
from edge_runtime.sources.base import EndOfStream, SourceError
from edge_runtime.sources.images import ImagesOptions
from edge_runtime.sources.sensor_lines import LineWindows

DET_SHAPES = REPO / "tests" / "models" / "det_shapes.tflite"  # 64x64 RGB float, letterbox
QUIET = Progress(False)


def daemon_parts(tmp_path: Path, model: Path, source: dict[str, Any],
                 preprocess: dict[str, Any] | None = None,
                 postprocess: dict[str, Any] | None = None) -> PipelineParts:
    pipeline: dict[str, Any] = {"name": "p", "source": source, "model": {"path": str(model)}}
    if preprocess:
        pipeline["preprocess"] = preprocess
    if postprocess:
        pipeline["postprocess"] = postprocess
    app = load_config(write_config(tmp_path / "config.toml", None, [pipeline]))
    return assemble(app.pipelines[0], app)


def daemon_tensors(parts: PipelineParts) -> tuple[np.ndarray, list[Any]]:
    """Every input the pipeline's source gives, through the pipeline's preprocess."""
    source = parts.make_source()
    source.open()
    tensor = parts.model.inputs[0]
    tensors, frames = [], []
    try:
        while True:
            frame = source.read()
            if frame is None:
                continue
            out = np.zeros(tensor.shape, tensor.dtype)
            parts.preprocess(frame, out)
            tensors.append(out[0])
            frames.append(frame)
    except EndOfStream:
        pass
    finally:
        source.close()
    return np.stack(tensors), frames


def converter_settings(model: Path, *args: str):
    """The converter's input settings for `model` from an edge-convert command line."""
    options = options_from_args(build_parser().parse_args([str(model), "-o", "x.tflite", *args]))
    loaded = TfliteModel(model, select_runtime("ai-edge-litert"))
    source = SourceModel(model, "test", "tflite", loaded.inputs[0], run_batch=lambda x: [],
                         make_converter=lambda scratch: None)
    return input_settings(options, source)


def photo(path: Path, width: int = 640, height: int = 480) -> Path:
    """A camera-sized JPEG with detail at every scale (so decode size and resampling show)."""
    rng = np.random.default_rng(7)
    smooth = cv2.resize(rng.integers(0, 256, (height // 16, width // 16, 3), np.uint8),
                        (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(0, 64, (height, width, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.add(smooth, noise), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


@pytest.mark.parametrize("model, args, preprocess", [
    # float RGB model with letterbox from its metadata; area resampling set on both sides
    (DET_SHAPES, ("--resize", "letterbox", "--std", "255", "--interpolation", "area"),
     {"interpolation": "area"}),
    # int8 gray model: quantization, gray conversion, stretch with the default interpolation
    (DIGITS_INT8, ("--color", "gray", "--std", "255"), {}),
])
def test_same_jpeg_gives_the_converter_the_daemons_tensor(tmp_path, model, args, preprocess):
    jpeg = photo(tmp_path / "images" / "cam.jpg")
    parts = daemon_parts(tmp_path, model, {"type": "images", "path": str(jpeg.parent)}, preprocess)
    device, frames = daemon_tensors(parts)
    assert frames[0].full_size == (640, 480), "the device decodes this JPEG at a reduced size"

    settings = converter_settings(model, *args)
    converted = load_dataset(jpeg.parent, settings, (), None, QUIET, "calibration")
    assert converted.x.dtype == device.dtype and converted.x.shape == device.shape
    assert converted.x.tobytes() == device.tobytes()

    # The device's reduced_decode = false is the converter's --no-reduced-decode.
    full = daemon_parts(tmp_path, model, {"type": "images", "path": str(jpeg.parent),
                                          "reduced_decode": False}, preprocess)
    device_full, frames = daemon_tensors(full)
    assert frames[0].full_size is None
    settings = converter_settings(model, *args, "--no-reduced-decode")
    converted_full = load_dataset(jpeg.parent, settings, (), None, QUIET, "calibration")
    assert converted_full.x.tobytes() == device_full.tobytes()
    assert converted_full.x.tobytes() != converted.x.tobytes(), "the decode size matters"


def test_same_csv_gives_the_converter_the_daemons_windows(tmp_path):
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 1, (100, 3)).round(4)
    lines = [" t , az,label, ax ,ay"]  # spaces around names, columns in another order
    for i, (ax, ay, az) in enumerate(rows):
        lines.append(f"{i / 100:.2f},{az},{'still' if i < 40 else 'moving'},{ax},{ay}")
        if i % 7 == 3:
            lines.append("")  # blank lines are no rows
        if i % 11 == 5:
            lines.append(" , , , , ")  # nor are lines of blank fields
    csv_path = tmp_path / "readings.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    mean, std = "0.5,-0.25,1", "2,4,0.5"
    parts = daemon_parts(tmp_path, VIBRATION_MODEL,
                         {"type": "csv", "path": str(csv_path), "stride": 4},
                         {"mean": [0.5, -0.25, 1.0], "std": [2.0, 4.0, 0.5]})
    device, frames = daemon_tensors(parts)
    assert len(device) == (100 - 32) // 4 + 1

    # The same text from a serial port or a command's stdout: the same windows, nothing counted bad.
    lines = LineWindows("serial", ("ax", "ay", "az"), 32, 4)
    streamed = lines.feed(csv_path.read_bytes())
    assert np.array_equal(np.stack(streamed), np.stack([f.data for f in frames]))
    assert lines.errors == 0

    settings = converter_settings(VIBRATION_MODEL, "--columns", "ax,ay,az", "--stride", "4",
                                  "--mean", mean, "--std", std)
    converted = load_dataset(csv_path, settings, (), None, QUIET, "calibration")
    assert converted.x.tobytes() == device.tobytes()

    # With the label column, the windows that lie in one class are those same windows.
    labeled = load_dataset(csv_path, converter_settings(
        VIBRATION_MODEL, "--columns", "ax,ay,az", "--stride", "4", "--mean", mean, "--std", std,
        "--label-column", "label"), (), None, QUIET, "calibration")
    one_class = [k for k in range(len(device)) if 4 * k + 31 < 40 or 4 * k >= 40]
    assert labeled.x.tobytes() == device[one_class].tobytes()
    assert labeled.class_names == ("moving", "still")
    assert labeled.labels.tolist() == [1 if 4 * k + 31 < 40 else 0 for k in one_class]


def test_same_labels_file_gives_the_same_class_names(tmp_path, caplog):
    # A byte order mark, spaces, a blank line in the middle (class 3 has no name) and blank
    # lines at the end (no classes): the converter used to drop the blank line and shift
    # classes 4-9 onto the wrong names.
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeffzero\n one \ntwo\n\nfour\nfive\nsix\nseven\neight\nnine\n\n\n"
                       .encode("utf-8"))
    with caplog.at_level(logging.WARNING):
        converter = read_label_names(labels)
    assert "1 blank label(s), class index 3" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parts = daemon_parts(tmp_path, DIGITS_INT8, {"type": "images", "path": "."}, None,
                             {"labels": str(labels), "top_k": 1})
    assert "1 blank label(s), class index 3" in caplog.text
    device = []
    for index in range(10):
        scores = np.eye(10, dtype=np.float32)[index].reshape(1, 10)
        (top,) = parts.postprocess([scores], None)["classes"]
        assert top["index"] == index
        device.append(top["label"])
    assert list(converter) == device
    assert device[3] == "" and device[4] == "four" and device[0] == "zero" and device[1] == "one"


def test_a_labels_file_without_labels_is_refused_by_both(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n \n")
    with pytest.raises(ConvertError, match="holds no labels"):
        read_label_names(labels)
    with pytest.raises(ConfigError, match="holds no labels"):
        daemon_parts(tmp_path, DIGITS_INT8, {"type": "images", "path": "."}, None,
                     {"labels": str(labels)})


def test_every_device_preprocessing_setting_is_a_converter_option():
    """One definition (PreprocessSpec's fields) gives the CLI options, the metadata keys and
    the config's [pipelines.preprocess] keys with the same choices."""
    parser = build_parser()
    options = {action.dest: action for action in parser._actions}  # noqa: SLF001 - argparse has no public list
    config = typing.get_type_hints(PreprocessConfig)
    spec_fields = fields(PreprocessSpec)
    # and the audio keys (preprocessing/audio.py), which are converter options too
    assert {f.name for f in spec_fields} | set(AUDIO_KEYS) == \
        set(PreprocessConfig.__dataclass_fields__)
    for name in AUDIO_KEYS:
        assert name in options, f"edge-convert has no --{name.replace('_', '-')}"
    assert tuple(options["features"].choices) == FEATURES == \
        typing.get_args(typing.get_args(config["features"])[0])
    assert set(PreprocessSpec().to_dict()) == {f.name for f in spec_fields}
    for spec_field in spec_fields:
        assert spec_field.name in options, f"edge-convert has no --{spec_field.name}"
        choices = spec_field.metadata["choices"]
        assert tuple(options[spec_field.name].choices or ()) == choices
        if choices:  # the config accepts exactly these values
            (literal, _none) = typing.get_args(config[spec_field.name])
            assert typing.get_args(literal) == choices
    args = parser.parse_args(["m.keras", "-o", "x.tflite", "--interpolation", "nearest",
                              "--mean", "1,2,3"])
    assert options_from_args(args).preprocess == {"interpolation": "nearest",
                                                  "mean": [1.0, 2.0, 3.0]}
    with pytest.raises(SystemExit):
        parser.parse_args(["m.keras", "-o", "x.tflite", "--interpolation", "cubic"])


def test_an_image_over_max_pixels_is_refused_by_both(tmp_path, caplog):
    """The device skips an image whose header declares more than max_pixels; the converter
    refuses it by name, with the device's default and with --max-pixels."""
    jpeg = photo(tmp_path / "images" / "cam.jpg")  # 640x480 = 307200 pixels
    parts = daemon_parts(tmp_path, DET_SHAPES, {"type": "images", "path": str(jpeg.parent),
                                                "max_pixels": 300_000})
    source = parts.make_source()
    source.open()
    with pytest.raises(SourceError, match="over max_pixels"):
        source.read()
    settings = converter_settings(DET_SHAPES, "--max-pixels", "300000")
    with pytest.raises(ConvertError, match=r"cam.jpg: 640x480 is 0.3 megapixels, over max_pixels"):
        load_dataset(jpeg.parent, settings, (), None, QUIET, "calibration")
    settings = converter_settings(DET_SHAPES, "--max-pixels", "307200")
    assert len(load_dataset(jpeg.parent, settings, (), None, QUIET, "calibration")) == 1
    assert converter_settings(DET_SHAPES).max_pixels == ImagesOptions("images", ".").max_pixels
