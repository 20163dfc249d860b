"""What goes into the model during a conversion: input settings, labels, calibration and validation data.

The settings come from the options the user gave and the source model's input tensor, through the
daemon's own preprocessing (one input path for converter and device). Validation data is the
given set, else the calibration set, else random inputs (which say little about accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.data import Dataset, InputSettings, load_dataset, read_labels_file
from converters.errors import ConvertError
from converters.loaders import SourceModel
from converters.modes import MODES
from converters.options import Options
from converters.progress import Progress
from edge_runtime.postprocessing.labels import LabelsError, read_labels, warn_blank_labels
from edge_runtime.preprocessing import (
    AudioPreprocessor,
    AudioSpec,
    ImagePreprocessor,
    PreprocessError,
    PreprocessSpec,
)

RANDOM_SAMPLES = 32


def read_label_names(path: Path) -> tuple[str, ...]:
    """--labels: the daemon's reader (line N names class N; a blank line is a class named ""),
    with the warning the daemon gives at start about blank names."""
    try:
        names = read_labels(path)
    except LabelsError as exc:
        raise ConvertError(f"--labels: {exc}") from None
    warn_blank_labels(names, f"--labels '{path}'")
    return names


def input_settings(options: Options, source: SourceModel) -> InputSettings:
    given = dict(options.preprocess)
    if source.source_layout and given.get("layout", "nhwc") != "nhwc":
        raise ConvertError(f"--layout {given['layout']}: the converted model takes NHWC (the "
                           f"{source.source_layout.upper()} source model is converted to it); "
                           f"leave --layout out")
    shape = source.input.shape
    audio = _audio_spec(options, source, given)
    if "color" not in given and len(shape) == 4 and audio is None:
        channels = shape[3] if given.get("layout", "nhwc") == "nhwc" else shape[1]
        given["color"] = "gray" if channels == 1 else "rgb"
    try:
        spec = PreprocessSpec().updated(given)
    except PreprocessError as exc:
        raise ConvertError(str(exc)) from None
    if audio is not None:
        try:
            AudioPreprocessor(spec, audio, source.input)  # the input tensor holds the features
        except PreprocessError as exc:
            raise ConvertError(str(exc)) from None
    return InputSettings(source.input, spec, options.columns, options.window, options.stride,
                         options.label_column, options.reduced_decode, audio,
                         max_pixels=options.max_pixels)


def _audio_spec(options: Options, source: SourceModel, given: dict[str, Any]) -> AudioSpec | None:
    """--sample-rate and friends into the audio section (None: not an audio model)."""
    if not options.audio:
        return None
    if "sample_rate" not in options.audio:
        raise ConvertError(f"{', '.join('--' + k.replace('_', '-') for k in options.audio)}: "
                           f"audio options need --sample-rate")
    if options.columns:
        raise ConvertError("--columns is for sensor models, --sample-rate for audio models")
    if given.get("layout", "nhwc") != "nhwc" or "color" in given or "resize" in given:
        raise ConvertError("--color, --resize and --layout are image options; an audio model "
                           "takes --mean/--std and the audio options")
    doc = {"window": options.window or options.audio["sample_rate"], **options.audio}
    try:
        return AudioSpec.from_dict(doc)
    except PreprocessError as exc:
        raise ConvertError(str(exc)) from None


def _random_inputs(settings: InputSettings, sensor: bool) -> np.ndarray:
    """Inputs for agreement checks when no data was given: random images through the daemon's
    preprocessing, or standard-normal arrays."""
    rng = np.random.default_rng(0)
    if settings.audio is not None:
        from converters.audio_data import noise_windows

        return noise_windows(settings.tensor, settings.preprocess, settings.audio,
                             RANDOM_SAMPLES, rng)
    x = np.zeros((RANDOM_SAMPLES, *settings.tensor.shape[1:]), settings.tensor.dtype)
    if not sensor and len(settings.tensor.shape) == 4:
        try:
            preprocessor = ImagePreprocessor(settings.preprocess, settings.tensor)
        except PreprocessError as exc:
            raise ConvertError(str(exc)) from None
        for i in range(RANDOM_SAMPLES):
            frame = rng.integers(0, 256, (preprocessor.height, preprocessor.width, 3), np.uint8)
            preprocessor(frame, x[i])
        return x
    x[...] = rng.standard_normal(x.shape)
    return x


@dataclass
class Inputs:
    calibration: Dataset | None
    validation: Dataset
    note: str  # how the validation data was chosen, when not given


def load_inputs(options: Options, settings: InputSettings, known_labels: tuple[str, ...],
                progress: Progress) -> Inputs:
    needs_calibration = any(MODES[m].needs_calibration for m in options.modes)
    calibration: Dataset | None = None
    if options.calibration_data is not None:
        calibration = load_dataset(options.calibration_data, settings, known_labels,
                                   options.calibration_samples, progress, "calibration")
    elif needs_calibration and not options.compare:
        raise ConvertError(f"--quantize {options.modes[0]} needs --calibration-data "
                           f"(a few hundred typical inputs)")
    note = ""
    if options.validation_data is not None:
        validation = load_dataset(options.validation_data, settings, known_labels,
                                  options.validation_samples, progress, "validation")
    elif calibration is not None:
        validation = calibration
        note = "no --validation-data: verified on the calibration data"
    else:
        validation = Dataset(_random_inputs(settings, bool(settings.columns)), None,
                             "random inputs")
        note = (f"no --validation-data: agreement measured on {RANDOM_SAMPLES} random inputs, "
                f"which says little about accuracy")
    if options.validation_labels is not None:
        labels, names = read_labels_file(options.validation_labels, known_labels)
        if len(labels) != len(validation):
            raise ConvertError(f"validation labels {options.validation_labels}: "
                               f"{len(labels)} labels for {len(validation)} samples")
        validation.labels, validation.class_names = labels, names or validation.class_names
        validation.origin += f", labels from {options.validation_labels}"
    return Inputs(calibration, validation, note)
