"""Log-mel features in numpy (edge_runtime/preprocessing/audio.py) against references: a DFT
written out by hand for one frame, and TensorFlow's tf.signal for whole recordings."""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import PreprocessError, PreprocessSpec
from edge_runtime.preprocessing.audio import (
    LOG_MEL_KEYS,
    AudioPreprocessor,
    AudioSpec,
    LogMel,
    LogMelSpec,
    MelBands,
    hz_to_mel,
)

ALSA = Path("/usr/share/sounds/alsa")
RATE = 16000


def recording(name: str = "Front_Left.wav") -> np.ndarray:
    """One second of a real recording (alsa-utils), taken down to 16 kHz by keeping every third
    sample (the features only need a realistic signal here, not a clean resampling)."""
    path = ALSA / name
    if not path.exists():
        pytest.skip("alsa-utils not installed (deploy/dev-setup.sh)")
    with wave.open(str(path)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return (pcm[::3][:RATE].astype(np.float32) / 32768.0).copy()


def tensor(shape, dtype=np.float32, scale=0.0, zero_point=0) -> TensorSpec:
    return TensorSpec("audio_in", 0, tuple(shape), np.dtype(dtype), scale, zero_point)


def test_one_frame_matches_a_dft_written_out():
    spec = LogMelSpec(RATE, n_fft=256, win_length=200, hop_length=80, n_mels=16, fmin=60,
                      fmax=7000, power=2.0, log_offset=1e-6)
    x = recording()[:4000]
    features = LogMel(spec, len(x))(x)
    frame_index = 7
    frame = x[frame_index * 80: frame_index * 80 + 200].astype(np.float64)
    hann = [0.5 - 0.5 * np.cos(2 * np.pi * n / 200) for n in range(200)]
    windowed = list(frame * hann) + [0.0] * 56
    power = []
    for k in range(129):
        re = sum(v * np.cos(2 * np.pi * k * n / 256) for n, v in enumerate(windowed))
        im = -sum(v * np.sin(2 * np.pi * k * n / 256) for n, v in enumerate(windowed))
        power.append(re * re + im * im)
    # Triangles on the HTK mel scale between band edges evenly spaced from fmin to fmax.
    low, high = 1127 * np.log(1 + 60 / 700), 1127 * np.log(1 + 7000 / 700)
    edges = [low + (high - low) * i / 17 for i in range(18)]
    expected = []
    for band in range(16):
        left, center, right = edges[band:band + 3]
        total = 0.0
        for k in range(1, 129):
            mel = 1127 * np.log(1 + (k * 8000 / 128) / 700)
            weight = max(0.0, min((mel - left) / (center - left), (right - mel) / (right - center)))
            total += weight * power[k]
        expected.append(np.log(total + 1e-6))
    assert features.shape == (1 + (4000 - 200) // 80, 16)
    np.testing.assert_allclose(features[frame_index], expected, rtol=0, atol=2e-4)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_whole_recording_matches_tf_signal(power):
    tf = pytest.importorskip("tensorflow")
    x = recording()
    spec = LogMelSpec(RATE, n_fft=512, win_length=400, hop_length=160, n_mels=40, fmin=20,
                      fmax=7600, power=power, log_offset=1e-6)
    ours = LogMel(spec, RATE)(x)
    stft = tf.signal.stft(x, frame_length=400, frame_step=160, fft_length=512,
                          window_fn=tf.signal.hann_window, pad_end=False)
    weights = tf.signal.linear_to_mel_weight_matrix(40, 257, RATE, 20.0, 7600.0)
    reference = tf.math.log(tf.tensordot(tf.abs(stft) ** power, weights, 1) + 1e-6).numpy()
    assert ours.shape == reference.shape == (98, 40)
    np.testing.assert_allclose(spec.mel_matrix(), weights.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=5e-4)


def test_a_tone_peaks_in_the_band_of_its_frequency():
    spec = LogMelSpec(RATE, n_mels=40, fmin=20)
    t = np.arange(RATE) / RATE
    bands = hz_to_mel(np.array([20.0, RATE / 2]))
    centers = np.linspace(bands[0], bands[1], 42)[1:-1]
    for hz in (300.0, 1000.0, 4000.0):
        features = LogMel(spec, RATE)(np.sin(2 * np.pi * hz * t).astype(np.float32))
        peak = int(np.argmax(features.mean(axis=0)))
        assert abs(centers[peak] - hz_to_mel(hz)) <= (centers[1] - centers[0]), hz


def test_silence_is_the_log_of_the_offset():
    features = LogMel(LogMelSpec(RATE, log_offset=1e-3), RATE)(np.zeros(RATE, np.float32))
    np.testing.assert_allclose(features, np.log(1e-3), rtol=1e-6)


def test_metadata_round_trip_keeps_every_parameter():
    spec = AudioSpec.from_dict({"sample_rate": 8000, "window": 8000, "features": "log-mel",
                                "n_fft": 256, "win_length": 200, "hop_length": 100,
                                "n_mels": 20, "fmin": 50, "fmax": 3800.0, "power": 1,
                                "log_offset": 0.01})
    assert spec.log_mel is not None and spec.log_mel.hop_length == 100 and spec.log_mel.power == 1
    assert AudioSpec.from_dict(spec.to_dict()) == spec
    names = {f.name for f in dataclasses.fields(LogMelSpec)} - {"sample_rate"}
    assert names == set(LOG_MEL_KEYS)
    assert spec.feature_shape == (1 + (8000 - 200) // 100, 20)


def test_config_overrides_the_metadata():
    meta = {"sample_rate": 16000, "window": 16000, "features": "log-mel", "n_mels": 40}
    spec = AudioSpec.from_dict(meta, {"n_mels": 32, "hop_length": 320, "fmin": None})
    assert spec.log_mel is not None and spec.log_mel.n_mels == 32
    assert spec.log_mel.hop_length == 320 and spec.log_mel.fmin == 20.0


@pytest.mark.parametrize("doc, message", [
    ({"sample_rate": 16000, "window": 16000, "features": "mfcc"}, "features must be one of"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "win_length": 1024},
     "win_length (1024) must not exceed n_fft (512)"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "fmax": 9000},
     "fmax <= sample_rate / 2 (8000 Hz)"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "fmin": 5000, "fmax": 4000},
     "fmin < fmax"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "n_mels": "40"},
     "'n_mels' must be an integer"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "hop_length": 0},
     "hop_length must be at least 1"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "power": 3},
     "power must be 1"),
    ({"sample_rate": 16000, "window": 16000, "features": "log-mel", "log_offset": 0},
     "log_offset must be positive"),
    ({"sample_rate": 16000, "window": 16000, "n_mels": 40}, "log-mel keys, but features"),
    ({"sample_rate": 16000, "window": 16000, "hop": 40}, "unknown audio key 'hop'"),
    ({"window": 16000}, "audio needs 'sample_rate'"),
])
def test_bad_parameters_are_named(doc, message):
    with pytest.raises(PreprocessError) as caught:
        AudioSpec.from_dict(doc)
    assert message in str(caught.value)


def test_the_tensor_must_hold_the_features():
    audio = AudioSpec.from_dict({"sample_rate": RATE, "window": RATE, "features": "log-mel"})
    with pytest.raises(PreprocessError, match=r"98 frames x 40 mel bands = 3920 values but input "
                                              r"tensor 'audio_in' \(shape \[1, 49, 40, 1\]\)"):
        AudioPreprocessor(PreprocessSpec(), audio, tensor([1, 49, 40, 1]))
    pre = AudioPreprocessor(PreprocessSpec(), audio, tensor([1, 98, 40, 1]))
    with pytest.raises(PreprocessError, match="expected an audio window of 16000 samples"):
        pre(np.zeros((8000, 1), np.float32), np.zeros((1, 98, 40, 1), np.float32))
    bad = np.zeros((RATE, 1), np.float32)
    bad[5] = np.nan
    with pytest.raises(PreprocessError, match="NaN or infinite"):
        pre(bad, np.zeros((1, 98, 40, 1), np.float32))


def test_int8_input_gets_normalized_quantized_features():
    x = recording()
    audio = AudioSpec.from_dict({"sample_rate": RATE, "window": RATE, "features": "log-mel"})
    spec = PreprocessSpec(mean=(-4.0,), std=(4.0,))
    quantized = tensor([1, 98, 40, 1], np.int8, scale=0.05, zero_point=-3)
    out = np.zeros((1, 98, 40, 1), np.int8)
    AudioPreprocessor(spec, audio, quantized)(x[:, None], out)
    expected = (LogMel(audio.log_mel, RATE)(x) + 4.0) / 4.0
    dequantized = (out.astype(np.float32) + 3) * 0.05
    in_range = np.abs(expected) < 6  # the int8 range covers about -6.2 .. 6.5 here
    assert in_range.mean() > 0.9
    np.testing.assert_allclose(dequantized.reshape(98, 40)[in_range], expected[in_range],
                               atol=0.05 / 2 + 1e-4)


def test_channels_are_averaged_and_waveform_passes_samples():
    x = recording()
    audio = AudioSpec(RATE, RATE)  # waveform
    pre = AudioPreprocessor(PreprocessSpec(), audio, tensor([1, RATE]))
    out = np.zeros((1, RATE), np.float32)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)
    pre(stereo, out)
    np.testing.assert_allclose(out[0], x / 2, atol=1e-7)


@pytest.mark.parametrize("options", [
    {}, {"hop_length": 320, "n_mels": 32, "fmin": 60.0, "fmax": 7600.0},
    {"n_fft": 256, "win_length": 256, "n_mels": 128},  # 13 bands narrower than a bin: all 0
    {"n_mels": 1}, {"n_mels": 2, "fmin": 0.0},
])
def test_mel_bands_sum_like_the_weight_matrix(options):
    """The BLAS-free band sums (MelBands) against the plain matrix product."""
    spec = LogMelSpec(RATE, **options)
    weights = spec.mel_matrix()
    spectrum = np.random.default_rng(1).random((37, weights.shape[0]), dtype=np.float32)
    expected = spectrum.astype(np.float64) @ weights.astype(np.float64)
    np.testing.assert_allclose(MelBands(weights)(spectrum), expected, rtol=1e-5, atol=1e-6)
