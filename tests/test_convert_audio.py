"""edge-convert for audio models: WAV files read and windowed like the device reads a pipe, the
daemon's log-mel features, the parameters stored in the model's metadata."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import edge_convert as convert
from converters.data import InputSettings, load_dataset
from converters.errors import ConvertError
from converters.progress import Progress
from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing import AudioPreprocessor, AudioSpec, PreprocessSpec
from edge_runtime.sources.stream_formats import SampleWindows

RATE = 8000
AUDIO = AudioSpec.from_dict({"sample_rate": RATE, "window": RATE // 2, "features": "log-mel",
                             "n_fft": 256, "win_length": 200, "hop_length": 100, "n_mels": 16})
FRAMES = 1 + (RATE // 2 - 200) // 100  # 39
LOG_MEL_INPUT = TensorSpec("audio", 0, (1, FRAMES, 16, 1), np.dtype(np.float32))
QUIET = Progress(False)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, width: int = 2) -> Path:
    """`samples`: [N] or [N, channels] floats in [-1, 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = samples if samples.ndim == 2 else samples[:, None]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(frames.shape[1])
        wav.setsampwidth(width)
        wav.setframerate(rate)
        if width == 2:
            wav.writeframes(np.round(frames * 32767).astype("<i2").tobytes())
        else:
            wav.writeframes((np.round(frames * 127) + 128).astype(np.uint8).tobytes())
    return path


def tone(hz: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def settings(spec: PreprocessSpec = PreprocessSpec(), stride: int = 1) -> InputSettings:
    return InputSettings(LOG_MEL_INPUT, spec, stride=stride, audio=AUDIO)


def test_class_folders_give_labeled_windows_computed_like_the_device(tmp_path):
    low = write_wav(tmp_path / "data" / "low" / "a.wav", tone(300, 1.2))
    write_wav(tmp_path / "data" / "high" / "b.wav",
              np.stack([tone(2500, 1.0), tone(2500, 1.0)], axis=1))  # stereo: averaged
    spec = PreprocessSpec(mean=(-3.0,), std=(2.0,))
    data = load_dataset(tmp_path / "data", settings(spec), (), None, QUIET, "calibration")
    # 1.2 s -> 2 windows of 0.5 s (stride = window), 1.0 s -> 2; classes sorted by name
    assert data.x.shape == (4, FRAMES, 16, 1)
    assert data.class_names == ("high", "low")
    assert list(data.labels) == [0, 0, 1, 1]
    assert "4 windows of 4000 samples (log-mel) from 2 recordings, 2 classes" in data.origin
    # The same numbers the device computes from the same bytes arriving on a pipe.
    with wave.open(str(low)) as wav:
        pcm = wav.readframes(wav.getnframes())
    device = AudioPreprocessor(spec, AUDIO, LOG_MEL_INPUT)
    windows = SampleWindows(1, RATE // 2, RATE // 2).feed(pcm)
    expected = np.zeros((1, FRAMES, 16, 1), np.float32)
    device(windows[1], expected)
    np.testing.assert_array_equal(data.x[3], expected[0])
    # and the tone is where it should be: the 2.5 kHz class peaks in a higher band
    assert np.argmax(data.x[0].mean(axis=0)) > np.argmax(data.x[2].mean(axis=0))


def test_stride_overlaps_windows_and_a_single_file_is_unlabeled(tmp_path):
    path = write_wav(tmp_path / "one.wav", tone(440, 1.0))
    data = load_dataset(path, settings(stride=RATE // 4), (), None, QUIET, "validation")
    assert len(data) == 3 and data.labels is None  # windows at 0, 0.25, 0.5 s


@pytest.mark.parametrize("make, message", [
    (lambda d: write_wav(d / "x" / "a.wav", tone(440, 1.0), rate=16000),
     "sampled at 16000 Hz, the model takes 8000 Hz; resample it (ffmpeg -i IN -ar 8000 OUT.wav)"),
    (lambda d: write_wav(d / "x" / "a.wav", tone(440, 0.3)),
     "2400 samples, shorter than one window of 4000 (0.5 s at 8000 Hz)"),
    (lambda d: write_wav(d / "x" / "a.wav", tone(440, 1.0), width=1),
     "8-bit samples; the device reads 16-bit (s16le)"),
    (lambda d: (d / "x").mkdir() or (d / "x" / "a.wav").write_bytes(b"RIFF\x00junk"),
     "not a PCM WAV file"),
])
def test_bad_recordings_are_named(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(ConvertError) as caught:
        load_dataset(tmp_path, settings(), (), None, QUIET, "calibration")
    assert message in str(caught.value) and "a.wav" in str(caught.value)


def test_mixed_folder_and_wav_without_audio_settings_are_refused(tmp_path):
    write_wav(tmp_path / "loose.wav", tone(440, 1.0))
    write_wav(tmp_path / "cls" / "a.wav", tone(440, 1.0))
    with pytest.raises(ConvertError, match="both .wav files and class subfolders"):
        load_dataset(tmp_path, settings(), (), None, QUIET, "calibration")
    plain = InputSettings(TensorSpec("x", 0, (1, 8000), np.dtype(np.float32)), PreprocessSpec())
    with pytest.raises(ConvertError, match="WAV data is for audio models; give --sample-rate"):
        load_dataset(tmp_path / "loose.wav", plain, (), None, QUIET, "calibration")


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    """A Keras model that tells a low tone from a high one on [39, 16] log-mel features, and the
    WAVs it is calibrated and validated on (one subfolder per class)."""
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("audio-convert")
    rng = np.random.default_rng(0)
    for split, count in (("calib", 12), ("val", 8)):
        for label, hz in (("high", 2500.0), ("low", 300.0)):
            for i in range(count):
                noise = rng.standard_normal(RATE // 2) * 0.01
                write_wav(root / split / label / f"{i}.wav",
                          np.clip(tone(hz * rng.uniform(0.9, 1.1), 0.5) + noise, -1, 1))
    data = load_dataset(root / "calib", settings(PreprocessSpec(mean=(-4.0,), std=(4.0,))), (),
                        None, QUIET, "training")
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.layers.Input((FRAMES, 16, 1)),
        tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        tf.keras.layers.AveragePooling2D((FRAMES, 1)),  # the band profile over time
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(tf.keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(data.x, data.labels, epochs=30, verbose=0)
    model.save(root / "tones.keras")
    return root


# The tone model's input: what AUDIO describes, as edge-convert's options.
FEATURES = ("--sample-rate", RATE, "--window", RATE // 2, "--features", "log-mel", "--n-fft", 256,
            "--win-length", 200, "--hop-length", 100, "--n-mels", 16, "--mean", -4, "--std", 4)


@pytest.mark.slow
def test_edge_convert_stores_the_audio_parameters_and_verifies_on_wavs(tone_model, tmp_path):
    from edge_runtime.model.metadata import read_model_metadata

    output = tmp_path / "tones.tflite"
    code, stdout, stderr = convert(
        tone_model / "tones.keras", "-o", output, "--quantize", "int8",
        *FEATURES,
        "--calibration-data", tone_model / "calib", "--validation-data", tone_model / "val",
        "--max-accuracy-drop", "0.05", "--no-progress")
    assert code == 0, stderr
    assert "16 windows of 4000 samples (log-mel) from 16 recordings, 2 classes" in stdout
    meta = read_model_metadata(output.read_bytes())
    assert meta.audio == AUDIO.to_dict()
    assert AudioSpec.from_dict(meta.audio) == AUDIO
    assert meta.preprocess == {"mean": [-4.0], "std": [4.0]}
    assert meta.labels == ("high", "low")
    assert meta.verification["report"]["accuracy"] == 1.0


@pytest.mark.slow
def test_edge_convert_refuses_features_that_do_not_fit_the_input(tone_model, tmp_path):
    code, _, stderr = convert(
        tone_model / "tones.keras", "-o", tmp_path / "x.tflite", "--sample-rate", RATE,
        "--window", RATE // 2, "--features", "log-mel", "--no-progress")  # default 512/400/160
    assert code == 2
    assert ("log-mel features of a 4000-sample window are 23 frames x 40 mel bands = 920 values "
            "but input tensor") in stderr
    code, _, stderr = convert(tone_model / "tones.keras", "-o", tmp_path / "x.tflite",
                              "--n-mels", 16, "--no-progress")
    assert code == 2 and "--n-mels: audio options need --sample-rate" in stderr


@pytest.mark.slow
def test_without_data_agreement_is_measured_on_noise_through_the_features(tone_model, tmp_path):
    from edge_runtime.model.metadata import read_model_metadata

    output = tmp_path / "tones_dynamic.tflite"
    code, stdout, stderr = convert(
        tone_model / "tones.keras", "-o", output, "--quantize", "dynamic",
        *FEATURES,
        "--no-progress")
    assert code == 0, stderr
    assert "agreement measured on 32 random inputs" in stdout
    assert read_model_metadata(output.read_bytes()).audio == AUDIO.to_dict()
