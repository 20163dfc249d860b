"""Audio windows (samples x channels, float32 in [-1, 1)) into an audio model's input tensor.

An audio model takes either the samples of a window as they are (`features = "waveform"`) or a
log-mel spectrogram of them (`features = "log-mel"`), computed here in numpy only, with the
conventions of TensorFlow's `tf.signal` (so a model trained on `tf.signal.stft` +
`linear_to_mel_weight_matrix` features runs unchanged):

    frames     frame i = samples[i * hop_length : i * hop_length + win_length], no padding
               (a window of N samples gives 1 + (N - win_length) // hop_length frames)
    window     periodic Hann of win_length, each frame zero-padded to n_fft at its end
    spectrum   |rfft| ** power (power 1: magnitude, 2: power)
    mel        triangular filters evenly spaced on the HTK mel scale (1127 ln(1 + f / 700))
               from fmin to fmax, n_mels of them, no area normalization, DC bin excluded
    log        ln(mel + log_offset)

The result, [frames, n_mels], is then normalized with the preprocess mean/std like a sensor
window and written into the input tensor (any shape holding frames x n_mels values, e.g.
[1, frames, n_mels, 1]). Several channels are averaged to one first.

The converter stores these parameters in the model's metadata ("audio" section, see AudioSpec)
and computes its calibration and validation features with this very module, so the device and
the converter feed the model the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing.spec import PreprocessError, PreprocessSpec, affine_to_input, store

FEATURES = ("waveform", "log-mel")
# The keys of the log-mel features, in metadata and in [pipelines.preprocess].
LOG_MEL_KEYS = ("n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "power",
                "log_offset")
_KEY_TYPES: dict[str, Any] = {"features": str, "fmin": (int, float), "fmax": (int, float),
                              "power": (int, float), "log_offset": (int, float)}


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale, as tf.signal uses it."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@dataclass(frozen=True)
class LogMelSpec:
    """Log-mel spectrogram parameters; lengths in samples, frequencies in Hz."""

    sample_rate: int
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 0.0  # 0: half the sample rate
    power: float = 2.0  # 1: magnitude spectrum, 2: power spectrum
    log_offset: float = 1e-6  # added before the log, so silence gives ln(log_offset), not -inf

    def __post_init__(self) -> None:
        if self.sample_rate < 1:
            raise PreprocessError(f"sample_rate must be at least 1, got {self.sample_rate!r}")
        for name in ("n_fft", "win_length", "hop_length", "n_mels"):
            if getattr(self, name) < 1:
                raise PreprocessError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.win_length > self.n_fft:
            raise PreprocessError(f"win_length ({self.win_length}) must not exceed n_fft "
                                  f"({self.n_fft})")
        if not 0 <= self.fmin < self.upper_hz <= self.sample_rate / 2:
            raise PreprocessError(
                f"need 0 <= fmin < fmax <= sample_rate / 2 ({self.sample_rate / 2:g} Hz), got "
                f"fmin {self.fmin:g}, fmax {self.upper_hz:g}")
        if self.power not in (1.0, 2.0):
            raise PreprocessError(f"power must be 1 (magnitude) or 2 (power), got {self.power!r}")
        if not self.log_offset > 0:
            raise PreprocessError(f"log_offset must be positive, got {self.log_offset!r}")

    @property
    def upper_hz(self) -> float:
        return self.fmax or self.sample_rate / 2

    def frames(self, samples: int) -> int:
        """How many frames a window of `samples` samples gives (0 if shorter than one frame)."""
        return 0 if samples < self.win_length else 1 + (samples - self.win_length) // self.hop_length

    def mel_matrix(self) -> np.ndarray:
        """[n_fft // 2 + 1, n_mels] weights from spectrum bins to mel bands (tf.signal's)."""
        bins = self.n_fft // 2 + 1
        # Bin 0 (DC) gets no weight: it says nothing about pitch and tf.signal drops it too.
        bin_mel = hz_to_mel(np.linspace(0.0, self.sample_rate / 2, bins))[1:, None]
        edges = np.linspace(hz_to_mel(self.fmin), hz_to_mel(self.upper_hz), self.n_mels + 2)
        lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
        rising = (bin_mel - lower) / (center - lower)
        falling = (upper - bin_mel) / (upper - center)
        weights = np.maximum(0.0, np.minimum(rising, falling))
        return np.vstack([np.zeros((1, self.n_mels)), weights]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LOG_MEL_KEYS}


class LogMel:
    """Computes log-mel spectrograms of windows of one length; reuses its buffers."""

    def __init__(self, spec: LogMelSpec, samples: int) -> None:
        self.spec = spec
        self.samples = samples
        self.frames = spec.frames(samples)
        if self.frames < 1:
            raise PreprocessError(f"a window of {samples} samples is shorter than one frame "
                                  f"(win_length {spec.win_length})")
        n = np.arange(spec.win_length)
        self._hann = (0.5 - 0.5 * np.cos(2 * np.pi * n / spec.win_length)).astype(np.float32)
        self._mel = MelBands(spec.mel_matrix())
        self._padded = np.zeros((self.frames, spec.n_fft), np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames, self.spec.n_mels

    def __call__(self, mono: np.ndarray) -> np.ndarray:
        """[frames, n_mels] float32 log-mel features of `samples` mono samples."""
        spec = self.spec
        if mono.shape != (self.samples,):
            raise PreprocessError(f"expected {self.samples} samples, got shape {list(mono.shape)}")
        framed = np.lib.stride_tricks.sliding_window_view(mono, spec.win_length)[::spec.hop_length]
        np.multiply(framed[: self.frames], self._hann, out=self._padded[:, : spec.win_length])
        spectrum = np.abs(np.fft.rfft(self._padded, n=spec.n_fft, axis=1))
        if spec.power == 2.0:
            np.square(spectrum, out=spectrum)
        mel = self._mel(spectrum.astype(np.float32))
        return np.log(mel + np.float32(spec.log_offset)).astype(np.float32, copy=False)


class MelBands:
    """spectrum [frames, bins] @ weights [bins, n_mels], without BLAS.

    A matrix product this small is microseconds on one thread, but numpy's OpenBLAS splits it
    across threads from about [98, 257] x [257, 40] on, and on a busy two-core board those
    threads wait for each other (measured on a loaded two-core machine: 0.03 ms
    single-threaded, 2.5 ms threaded; this: 0.17 ms, and no threads). The triangles of bands k
    and k + 2 do not overlap, so the even bands and the odd bands are each one weighting of the
    bins and a sum over contiguous runs of them (`np.add.reduceat`): two multiplies and two
    reductions, the same sums.
    """

    def __init__(self, weights: np.ndarray) -> None:
        bins, bands = weights.shape
        self.bands = bands
        # Per parity: the weight of each bin for its band, the run boundaries, the bands.
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for parity in (0, 1):
            weight = np.zeros(bins + 1, np.float32)  # + 1: a zero column, so a run may end last
            bounds: list[int] = []
            kept: list[int] = []
            for band in range(parity, bands, 2):
                nonzero = np.flatnonzero(weights[:, band])
                if not nonzero.size:
                    continue  # a band narrower than a bin: its sum stays 0
                start, end = int(nonzero[0]), int(nonzero[-1]) + 1
                if bounds and start < bounds[-1] or np.any(weight[start:end]):
                    raise ValueError("mel bands k and k + 2 overlap")  # not triangles on a scale
                weight[start:end] = weights[start:end, band]
                bounds += [start, end]
                kept.append(band)
            self._parts.append((weight, np.asarray(bounds, np.intp), np.asarray(kept, np.intp)))

    def __call__(self, spectrum: np.ndarray) -> np.ndarray:
        frames, bins = spectrum.shape
        # Bins as rows: reduceat then sums contiguous rows, vectorized over the frames.
        by_bin = np.empty((bins + 1, frames), np.float32)
        by_bin[:-1] = spectrum.T
        by_bin[-1] = 0.0
        out = np.zeros((frames, self.bands), np.float32)
        for weight, bounds, kept in self._parts:
            if kept.size:
                # reduceat sums [b0, b1), [b1, b2), ...: the even runs are the bands' own.
                sums = np.add.reduceat(by_bin * weight[:, None], bounds, axis=0)
                out[:, kept] = sums[0::2].T
        return out


@dataclass(frozen=True)
class AudioSpec:
    """What an audio model takes: windows of `window` samples at `sample_rate`, as features.

    Stored in the model's metadata as its "audio" section, e.g.
    {"sample_rate": 16000, "window": 16000, "features": "log-mel", "n_fft": 512, ...}.
    """

    sample_rate: int
    window: int  # samples per window
    features: str = "waveform"
    log_mel: LogMelSpec | None = None  # set when features == "log-mel"

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.window < 1:
            raise PreprocessError(f"sample_rate and window must be at least 1, got "
                                  f"{self.sample_rate!r} and {self.window!r}")
        if self.features not in FEATURES:
            raise PreprocessError(f"features must be one of {', '.join(FEATURES)}, "
                                  f"not {self.features!r}")
        if (self.features == "log-mel") != (self.log_mel is not None):
            raise PreprocessError("log-mel parameters go with features = 'log-mel' only")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
                  ) -> AudioSpec:
        """From a metadata "audio" section, with [pipelines.preprocess] keys on top; unknown keys
        and wrong types are PreprocessError naming the key."""
        merged = {**doc, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        allowed = {"sample_rate", "window", "features", *LOG_MEL_KEYS}
        for key, value in merged.items():
            if key not in allowed:
                raise PreprocessError(f"unknown audio key {key!r} (expected one of: "
                                      f"{', '.join(sorted(allowed))})")
            wanted = _KEY_TYPES.get(key, int)
            if isinstance(value, bool) or not isinstance(value, wanted):
                kind = {str: "a string", int: "an integer"}.get(wanted, "a number")
                raise PreprocessError(f"audio key {key!r} must be {kind}, got {value!r}")
        for key in ("sample_rate", "window"):
            if key not in merged:
                raise PreprocessError(f"audio needs {key!r}")
        features = merged.get("features", "waveform")
        mel_keys = {k: merged[k] for k in LOG_MEL_KEYS if k in merged}
        log_mel = None
        if features == "log-mel":
            log_mel = LogMelSpec(sample_rate=merged["sample_rate"], **mel_keys)
        elif mel_keys and features == "waveform":
            raise PreprocessError(f"{', '.join(sorted(mel_keys))}: log-mel keys, but features is "
                                  f"'waveform'")
        return cls(merged["sample_rate"], merged["window"], features, log_mel)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"sample_rate": self.sample_rate, "window": self.window,
                               "features": self.features}
        if self.log_mel is not None:
            doc.update(self.log_mel.to_dict())
        return doc

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """[frames, n_mels] for log-mel, [window] for the waveform (one channel)."""
        if self.log_mel is not None:
            return LogMel(self.log_mel, self.window).shape
        return (self.window,)


class AudioPreprocessor:
    """A window of `window` samples x channels into the model input (features, then mean/std)."""

    def __init__(self, spec: PreprocessSpec, audio: AudioSpec, tensor: TensorSpec) -> None:
        self.audio = audio
        self.tensor = tensor
        self._log_mel = LogMel(audio.log_mel, audio.window) if audio.log_mel else None
        shape = self._log_mel.shape if self._log_mel else (audio.window,)
        if math.prod(tensor.shape) != math.prod(shape):
            what = (f"{shape[0]} frames x {shape[1]} mel bands" if self._log_mel
                    else f"{audio.window} samples")
            raise PreprocessError(
                f"{audio.features} features of a {audio.window}-sample window are {what} = "
                f"{math.prod(shape)} values but input tensor {tensor.name!r} (shape "
                f"{list(tensor.shape)}) takes {math.prod(tensor.shape)}")
        self.shape = shape
        self._gain, self._offset = affine_to_input(spec, tensor, 1)
        self._values = np.zeros(shape, np.float32)

    def features(self, window: np.ndarray) -> np.ndarray:
        """The features of one window ([samples] or [samples, channels]), before mean/std."""
        if window.ndim == 1:
            window = window[:, None]
        if window.ndim != 2 or window.shape[0] != self.audio.window:
            raise PreprocessError(f"expected an audio window of {self.audio.window} samples, got "
                                  f"shape {list(window.shape)}")
        if not math.isfinite(window.sum(dtype=np.float64)):
            raise PreprocessError("audio window holds NaN or infinite values")
        mono = window[:, 0] if window.shape[1] == 1 else window.mean(axis=1, dtype=np.float32)
        mono = np.ascontiguousarray(mono, np.float32)
        return self._log_mel(mono) if self._log_mel else mono

    def __call__(self, window: np.ndarray, out: np.ndarray) -> None:
        np.multiply(self.features(window), self._gain[0], out=self._values)
        np.add(self._values, self._offset[0], out=self._values)
        store(self._values, out)


def audio_keys(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The audio keys among [pipelines.preprocess] settings (features and the log-mel keys)."""
    names = {"features", *LOG_MEL_KEYS}
    return {k: v for k, v in settings.items() if k in names and v is not None}


__all__ = ["AudioPreprocessor", "AudioSpec", "FEATURES", "LOG_MEL_KEYS", "LogMel", "LogMelSpec",
           "MelBands", "audio_keys", "hz_to_mel"]

