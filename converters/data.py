"""Calibration and validation data: image folders, .npy/.npz arrays and sensor CSV files.

Nothing here decodes, reads or preprocesses on its own: images are decoded by the images source's
decoder (edge_runtime.sources.images.ImageFileDecoder, reduced JPEG decode included), CSV files
read and windowed by the csv source's reader (edge_runtime.sources.windowing), and both go through
the daemon's preprocessing (edge_runtime.preprocessing), so the model is calibrated and verified
on the very tensors the device will feed it. Arrays in .npy/.npz files are taken as model inputs
that are already preprocessed.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from converters.errors import ConvertError
from converters.progress import Progress
from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import ImagePreprocessor, PreprocessError, PreprocessSpec
from edge_runtime.preprocessing import AudioSpec, SensorPreprocessor
from edge_runtime.sources.image_decode import ImageTooLarge
from edge_runtime.sources.images import IMAGE_SUFFIXES as DAEMON_IMAGE_SUFFIXES
from edge_runtime.sources.images import DEFAULT_MAX_PIXELS, ImageFileDecoder, list_images
from edge_runtime.sources.windowing import SensorDataError, csv_windows

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = tuple(sorted(DAEMON_IMAGE_SUFFIXES))  # the images source reads the same files
X_KEYS = ("x", "inputs", "images", "windows", "data")
Y_KEYS = ("y", "labels", "label")
SUBSET_SEED = 0


@dataclass(frozen=True)
class InputSettings:
    """How raw data becomes inputs of the source model (its input tensor has batch 1)."""

    tensor: TensorSpec
    preprocess: PreprocessSpec
    columns: tuple[str, ...] = ()
    window: int | None = None
    stride: int = 1
    label_column: str | None = None
    # As the images source's `reduced_decode`: JPEGs decoded at 1/2, 1/4 or 1/8 size when the
    # model input allows; the converter decodes as the device will (--no-reduced-decode).
    reduced_decode: bool = True
    audio: AudioSpec | None = None  # audio models: WAV files become windows of these features
    max_pixels: int = DEFAULT_MAX_PIXELS  # as the images source's: larger images are refused

    def sensor_window(self) -> int:
        """Rows per window: --window, else what the input tensor's shape implies."""
        if self.window:
            return self.window
        shape, width = self.tensor.shape, len(self.columns)
        if len(shape) == 3 and shape[2] == width:
            return shape[1]
        total = math.prod(shape)
        if width and total % width == 0:
            return total // width
        raise ConvertError(
            f"cannot tell the window length from input shape {list(shape)} and "
            f"{width} column(s); pass --window"
        )


@dataclass
class Dataset:
    x: np.ndarray  # [N, *input shape without batch], the source model's input dtype
    labels: np.ndarray | None  # class index per sample, or None when unlabeled
    origin: str  # for the report, e.g. "val/ (120 images, 10 classes)"
    class_names: tuple[str, ...] = ()  # class index -> name, when the data named its classes

    def __len__(self) -> int:
        return len(self.x)


def load_dataset(
    path: Path,
    settings: InputSettings,
    known_labels: Sequence[str],
    limit: int | None,
    progress: Progress,
    what: str,
) -> Dataset:
    """Load `path` as `what` ("calibration" or "validation") data for the source model."""
    where = f"{what} data {path}"
    if not path.exists():
        raise ConvertError(f"{where}: no such file or folder")
    suffix = path.suffix.lower()
    try:
        if settings.audio is not None and (path.is_dir() or suffix == ".wav"):
            dataset = _load_audio(path, settings, known_labels, limit, progress, where)
        elif path.is_dir():
            dataset = _load_images(path, settings, known_labels, limit, progress, where)
        elif suffix == ".npy":
            dataset = _load_arrays(path, settings, known_labels, limit, where)
        elif suffix == ".npz":
            dataset = _load_arrays(path, settings, known_labels, limit, where)
        elif suffix == ".csv":
            dataset = _load_csv(path, settings, known_labels, limit, progress, where)
        elif suffix == ".wav":
            raise ConvertError(f"{where}: WAV data is for audio models; give --sample-rate "
                               f"(and --features log-mel for log-mel inputs)")
        else:
            raise ConvertError(
                f"{where}: unsupported data; give a folder of images, a .npy/.npz file or a .csv"
            )
    except (PreprocessError, SensorDataError) as exc:
        raise ConvertError(f"{where}: {exc}") from exc
    logger.info("%s data: %s", what, dataset.origin)
    return dataset


def _load_audio(path: Path, settings: InputSettings, known_labels: Sequence[str],
                limit: int | None, progress: Progress, where: str) -> Dataset:
    from converters.audio_data import load_wavs

    assert settings.audio is not None
    stride = settings.stride if settings.stride > 1 else settings.audio.window
    x, names, origin = load_wavs(path, settings.tensor, settings.preprocess, settings.audio,
                                 stride, limit, progress, where)
    labels, class_names = None, ()
    if names:
        labels, class_names = label_indices(names, known_labels, where)
    return Dataset(x, labels, origin, class_names)


def subset(count: int, limit: int | None) -> np.ndarray:
    """Indices of a reproducible random subset of `limit` items (all when limit is None)."""
    if limit is None or limit >= count:
        return np.arange(count)
    rng = np.random.default_rng(SUBSET_SEED)
    return np.sort(rng.choice(count, size=limit, replace=False))


def _empty_batch(settings: InputSettings, count: int) -> np.ndarray:
    return np.zeros((count, *settings.tensor.shape[1:]), dtype=settings.tensor.dtype)


def _class_order(names: Sequence[str]) -> list[str]:
    if all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def label_indices(
    names: Sequence[str], known_labels: Sequence[str], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class names (or numbers) -> indices; with --labels, into that list, else sorted names."""
    if known_labels:
        index = {name: i for i, name in enumerate(known_labels)}
        result = []
        for name in names:
            if name in index:
                result.append(index[name])
            elif name.isdigit() and int(name) < len(known_labels):
                result.append(int(name))
            else:
                raise ConvertError(f"{where}: class {name!r} is not one of the labels "
                                   f"({', '.join(known_labels)})")
        return np.asarray(result, np.int64), tuple(known_labels)
    order = _class_order(sorted(set(names)))
    if all(n.isdigit() for n in order):
        return np.asarray([int(n) for n in names], np.int64), ()
    position = {name: i for i, name in enumerate(order)}
    return np.asarray([position[n] for n in names], np.int64), tuple(order)


def _load_images(
    folder: Path,
    settings: InputSettings,
    known_labels: Sequence[str],
    limit: int | None,
    progress: Progress,
    where: str,
) -> Dataset:
    loose = list_images(str(folder))
    classes = {d.name: list_images(str(d)) for d in sorted(folder.iterdir()) if d.is_dir()}
    classes = {name: files for name, files in classes.items() if files}
    if loose and classes:
        raise ConvertError(
            f"{where}: has both images and class subfolders; put every image in a class "
            f"subfolder (labeled) or none (unlabeled)"
        )
    if classes:
        files = [f for name in classes for f in classes[name]]
        names = [name for name in classes for _ in classes[name]]
    else:
        files, names = loose, []
    if not files:
        raise ConvertError(
            f"{where}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files, directly or "
            f"in one subfolder per class)"
        )
    preprocessor = ImagePreprocessor(settings.preprocess, settings.tensor)
    decoder = ImageFileDecoder(preprocessor.input_size, settings.reduced_decode,
                               settings.max_pixels)
    chosen = subset(len(files), limit)
    x = _empty_batch(settings, len(chosen))
    for row, i in enumerate(progress.iterate(chosen, "reading images", len(chosen))):
        try:
            frame = decoder.frame(files[i], row)
            if frame is None:
                raise ConvertError(f"{files[i]}: cannot read this image (corrupt or not an image)")
            preprocessor(frame.data, x[row])
        except (ImageTooLarge, PreprocessError) as exc:
            raise ConvertError(f"{files[i]}: {exc}") from exc
    labels, class_names = None, ()
    if names:
        labels, class_names = label_indices([names[i] for i in chosen], known_labels, where)
    described = f"{len(x)} images" + (f", {len(classes)} classes" if classes else ", unlabeled")
    return Dataset(x, labels, f"{folder} ({described})", class_names)


def _load_arrays(
    path: Path, settings: InputSettings, known_labels: Sequence[str], limit: int | None, where: str
) -> Dataset:
    y = None
    try:
        if path.suffix.lower() == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                x_key = next((k for k in X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if x_key is None:
                    raise ConvertError(
                        f"{where}: no input array; name it one of {', '.join(X_KEYS)} "
                        f"(found {', '.join(keys) or 'none'})")
                x = archive[x_key]
                y_key = next((k for k in Y_KEYS if k in keys), None)
                y = archive[y_key] if y_key else None
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{where}: cannot read ({exc})") from exc
    expected = settings.tensor.shape[1:]
    if x.shape == settings.tensor.shape[1:] or x.shape == settings.tensor.shape:
        x = x.reshape(1, *expected)
    if tuple(x.shape[1:]) != expected:
        raise ConvertError(
            f"{where}: wrong shape {list(x.shape)}; the model takes "
            f"[N, {', '.join(map(str, expected))}]"
        )
    if len(x) == 0:
        raise ConvertError(f"{where}: holds no samples")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ConvertError(f"{where}: inputs must be finite numbers (dtype {x.dtype})")
    labels = class_names = None
    if y is not None:
        if len(y) != len(x):
            raise ConvertError(f"{where}: {len(y)} labels for {len(x)} inputs")
        labels, class_names = _array_labels(y, known_labels, where)
    chosen = subset(len(x), limit)
    x = x[chosen].astype(settings.tensor.dtype, copy=False)
    if labels is not None:
        labels = labels[chosen]
    kind = "unlabeled" if labels is None else "labeled"
    return Dataset(x, labels, f"{path} ({len(x)} arrays, {kind})", class_names or ())


def _array_labels(
    y: np.ndarray, known_labels: Sequence[str], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.asarray(y).reshape(-1)
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64), tuple(known_labels)
    return label_indices([str(v) for v in y], known_labels, where)


def read_labels_file(path: Path, known_labels: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """--validation-labels: a .npy/.npz of labels, or a text/CSV file with one label per line."""
    where = f"validation labels {path}"
    if not path.is_file():
        raise ConvertError(f"{where}: no such file")
    if path.suffix.lower() in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
            if path.suffix.lower() == ".npz":
                keys = list(loaded.keys())
                key = next((k for k in Y_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ConvertError(f"{where}: name the labels array one of {', '.join(Y_KEYS)}")
                loaded = loaded[key]
        except (OSError, ValueError) as exc:
            raise ConvertError(f"{where}: cannot read ({exc})") from exc
        return _array_labels(loaded, known_labels, where)
    with path.open(newline="") as handle:
        names = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip()]
    if names and names[0].lower() in Y_KEYS:
        names = names[1:]
    if not names:
        raise ConvertError(f"{where}: no labels in the file")
    return label_indices(names, known_labels, where)


def _load_csv(
    path: Path,
    settings: InputSettings,
    known_labels: Sequence[str],
    limit: int | None,
    progress: Progress,
    where: str,
) -> Dataset:
    if not settings.columns:
        raise ConvertError(
            f"{where}: CSV data needs --columns (the sensor columns, in model order)")
    window = settings.sensor_window()
    preprocessor = SensorPreprocessor(settings.preprocess, settings.tensor, window,
                                      len(settings.columns))
    windows = list(csv_windows(path, settings.columns, window, settings.stride,
                               settings.label_column))
    keep = list(range(len(windows)))
    names: list[str] = []
    if settings.label_column:  # keep the windows whose rows are all of one class
        keep = [k for k, (_, rows) in enumerate(windows) if len(set(rows)) == 1]
        names = [windows[k][1][0] for k in keep]
        if windows and not keep:
            raise ConvertError(f"{where}: no window of {window} rows lies inside a single class")
    if not keep:
        raise ConvertError(f"{where}: fewer than {window} data rows, so not one full window")
    chosen = subset(len(keep), limit)
    x = _empty_batch(settings, len(chosen))
    for row, i in enumerate(progress.iterate(chosen, "windowing", len(chosen))):
        preprocessor(windows[keep[i]][0], x[row])
    labels = None
    class_names: tuple[str, ...] = ()
    if settings.label_column:
        labels, class_names = label_indices([names[i] for i in chosen], known_labels, where)
    kind = f"label column {settings.label_column!r}" if settings.label_column else "unlabeled"
    return Dataset(x, labels, f"{path} ({len(x)} windows of {window} rows, {kind})", class_names)
