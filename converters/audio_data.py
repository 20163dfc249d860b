"""Calibration and validation data for audio models: WAV files into model inputs.

A WAV file is cut into windows by the daemon's own s16le windowing (the `SampleWindows` of the
command source, fed the file's PCM bytes as a pipe would deliver them) and each window goes through
the daemon's AudioPreprocessor (log-mel features or the waveform), so the model is calibrated and
verified on exactly the numbers the device computes. A folder with one subfolder per class gives
labeled windows; loose .wav files (or one file) give unlabeled ones.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from converters.errors import ConvertError
from converters.progress import Progress
from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import AudioPreprocessor, AudioSpec, PreprocessSpec
from edge_runtime.sources.stream_formats import SampleWindows

WAV_SUFFIX = ".wav"


@dataclass(frozen=True)
class Recording:
    path: Path
    sample_rate: int
    channels: int
    pcm: bytes  # interleaved s16le, as `arecord -f S16_LE -t raw` writes it


def read_wav(path: Path) -> Recording:
    """A 16-bit PCM WAV file; anything else is a ConvertError saying how to convert it."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ConvertError(f"{path}: not a PCM WAV file ({exc}); convert it with "
                           f"ffmpeg -i IN -c:a pcm_s16le OUT.wav") from None
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if width != 2:
        raise ConvertError(f"{path}: {8 * width}-bit samples; the device reads 16-bit (s16le), "
                           f"convert with ffmpeg -i IN -c:a pcm_s16le OUT.wav")
    return Recording(path, rate, channels, pcm)


def recording_windows(recording: Recording, audio: AudioSpec, stride: int) -> list[np.ndarray]:
    """The windows the device would cut from this recording arriving on a pipe."""
    if recording.sample_rate != audio.sample_rate:
        raise ConvertError(
            f"{recording.path}: sampled at {recording.sample_rate} Hz, the model takes "
            f"{audio.sample_rate} Hz; resample it (ffmpeg -i IN -ar {audio.sample_rate} OUT.wav)")
    samples = len(recording.pcm) // (2 * recording.channels)
    if samples < audio.window:
        raise ConvertError(
            f"{recording.path}: {samples} samples, shorter than one window of {audio.window} "
            f"({audio.window / audio.sample_rate:g} s at {audio.sample_rate} Hz)")
    return SampleWindows(recording.channels, audio.window, stride).feed(recording.pcm)


def _wav_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == WAV_SUFFIX)


def has_wavs(folder: Path) -> bool:
    """A folder of WAV files, directly or in class subfolders."""
    return bool(_wav_files(folder)) or any(
        d.is_dir() and _wav_files(d) for d in folder.iterdir())


def load_wavs(path: Path, tensor: TensorSpec, spec: PreprocessSpec, audio: AudioSpec,
              stride: int, limit: int | None, progress: Progress, where: str,
              ) -> tuple[np.ndarray, list[str], str]:
    """(inputs [N, *tensor shape[1:]], class name per input or [], description).

    `path` is a .wav file, a folder of them (unlabeled) or a folder of class subfolders."""
    from converters.data import subset  # data.py dispatches here; the shared subset rule

    if path.is_dir():
        loose = _wav_files(path)
        classes = {d.name: _wav_files(d) for d in sorted(path.iterdir()) if d.is_dir()}
        classes = {name: files for name, files in classes.items() if files}
        if loose and classes:
            raise ConvertError(f"{where}: has both .wav files and class subfolders; put every "
                               f"file in a class subfolder (labeled) or none (unlabeled)")
        files = [f for name in classes for f in classes[name]] if classes else loose
        names = [name for name in classes for _ in classes[name]]
        if not files:
            raise ConvertError(f"{where}: no .wav files found (directly or in one subfolder "
                               f"per class)")
    else:
        files, names, classes = [path], [], {}
    windows: list[np.ndarray] = []
    window_names: list[str] = []
    for i, file in enumerate(progress.iterate(files, "reading recordings", len(files))):
        cut = recording_windows(read_wav(file), audio, stride or audio.window)
        windows.extend(cut)
        if names:
            window_names.extend([names[i]] * len(cut))
    preprocessor = AudioPreprocessor(spec, audio, tensor)
    chosen = subset(len(windows), limit)
    x = np.zeros((len(chosen), *tensor.shape[1:]), tensor.dtype)
    for row, i in enumerate(progress.iterate(chosen, "audio features", len(chosen))):
        preprocessor(windows[i], x[row])
    labels = [window_names[i] for i in chosen] if window_names else []
    described = (f"{len(x)} windows of {audio.window} samples ({audio.features}) from "
                 f"{len(files)} recordings" + (f", {len(classes)} classes" if classes
                                               else ", unlabeled"))
    return x, labels, f"{path} ({described})"


def noise_windows(tensor: TensorSpec, spec: PreprocessSpec, audio: AudioSpec, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Inputs for agreement checks when no data was given: quiet noise through the features."""
    preprocessor = AudioPreprocessor(spec, audio, tensor)
    x = np.zeros((count, *tensor.shape[1:]), tensor.dtype)
    for i in range(count):
        level = 10 ** rng.uniform(-3, -0.5)
        window = (rng.standard_normal((audio.window, 1)) * level).astype(np.float32)
        preprocessor(np.clip(window, -1, 1), x[i])
    return x


__all__ = ["Recording", "has_wavs", "load_wavs", "noise_windows", "read_wav",
           "recording_windows"]

