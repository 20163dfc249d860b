"""Train and convert the example audio model from recordings that ship in a Debian package.

    python examples/build_audio_model.py     # needs the 'convert' extra, ffmpeg and alsa-utils

alsa-utils installs spoken channel names (/usr/share/sounds/alsa/Front_Left.wav, "front left",
...) and a noise recording. From them this script makes a keyword data set it can make itself:
the second word of each phrase (center / left / right) placed at random offsets in one-second
windows, sped up or slowed down (resampling), louder or quieter, over background noise; the
noise recording; silence; and the first word alone (front / rear / side: "unknown"). A small
CNN learns that on log-mel features computed by the daemon's own code
(edge_runtime/preprocessing/audio.py), and edge-convert turns it into a full-integer int8
.tflite, calibrated and verified on WAV files it reads like the device reads audio, with the
feature parameters stored in the model's metadata.

Writes examples/audio/keywords.tflite (committed, so the daemon and its tests need no
TensorFlow). Takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edge_runtime.model.tflite_model import TensorSpec  # noqa: E402
from edge_runtime.preprocessing import AudioPreprocessor, AudioSpec, PreprocessSpec  # noqa: E402

logger = logging.getLogger("build_audio_model")
ALSA = Path("/usr/share/sounds/alsa")
RATE = 16000
WINDOW = RATE  # one second
# 20 ms hops over 25 ms frames, 32 mel bands: [49, 32] features per window
FEATURES = {"sample_rate": RATE, "window": WINDOW, "features": "log-mel", "n_fft": 512,
            "win_length": 400, "hop_length": 320, "n_mels": 32, "fmin": 60.0, "fmax": 7600.0,
            "power": 2.0, "log_offset": 1e-6}
LABELS = ["center", "left", "right", "noise", "silence", "unknown"]
WORDS = {"center": ["Front_Center", "Rear_Center"],
         "left": ["Front_Left", "Rear_Left", "Side_Left"],
         "right": ["Front_Right", "Rear_Right", "Side_Right"]}
PER_CLASS = 320  # training windows per class
HELD_OUT = 40  # validation windows per class (other random draws)


@dataclass(frozen=True)
class Phrase:
    samples: np.ndarray  # float32 mono at RATE
    second_word: tuple[int, int]  # [start, end) of the keyword
    first_word: tuple[int, int]


def decode(path: Path) -> np.ndarray:
    """A recording as the device gets it from `ffmpeg -i FILE -f s16le -ac 1 -ar 16000 -`."""
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i",
                          str(path), "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def split_words(samples: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two words of a phrase: voiced 20 ms blocks, split at the longest pause."""
    block = RATE // 50
    energy = np.array([np.sqrt(np.mean(samples[i:i + block] ** 2))
                       for i in range(0, len(samples) - block, block)])
    voiced = np.flatnonzero(energy > 0.02)
    gaps = np.diff(voiced)
    cut = int(np.argmax(gaps))
    first = (int(voiced[0] * block), int((voiced[cut] + 1) * block))
    second = (int(voiced[cut + 1] * block), int((voiced[-1] + 1) * block))
    return first, second


def load_phrases() -> dict[str, list[Phrase]]:
    phrases: dict[str, list[Phrase]] = {}
    for label, names in WORDS.items():
        for name in names:
            samples = decode(ALSA / f"{name}.wav")
            first, second = split_words(samples)
            phrases.setdefault(label, []).append(Phrase(samples, second, first))
    return phrases


def stretch(samples: np.ndarray, speed: float) -> np.ndarray:
    """Played `speed` times faster (pitch moves with it), by linear interpolation."""
    positions = np.arange(0, len(samples) - 1, speed)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def background(rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
    """Quiet room noise: white at -70..-40 dBFS, or the noise recording far down."""
    if rng.random() < 0.5:
        return (rng.standard_normal(WINDOW) * 10 ** rng.uniform(-3.5, -2)).astype(np.float32)
    start = rng.integers(0, len(noise) - WINDOW)
    return noise[start:start + WINDOW] * np.float32(10 ** rng.uniform(-2.5, -1.3))


def place(segment: np.ndarray, span: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A window holding segment[span] whole, at a random position; the rest of `segment` falls
    where it falls (cut at the window's edges)."""
    start, end = span
    length = end - start
    lead = int(rng.integers(0, max(1, WINDOW - length)))  # where the span starts in the window
    window = np.zeros(WINDOW, np.float32)
    src0 = start - lead
    lo, hi = max(0, src0), min(len(segment), src0 + WINDOW)
    window[lo - src0:hi - src0] = segment[lo:hi]
    return window


def example(label: str, phrases: dict[str, list[Phrase]], noise: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    if label in WORDS or label == "unknown":
        pool = phrases[label] if label in WORDS else [p for ps in phrases.values() for p in ps]
        phrase = pool[int(rng.integers(len(pool)))]
        speed = float(rng.uniform(0.88, 1.12))
        samples = stretch(phrase.samples, speed)
        if label == "unknown":  # the first word alone: the keyword is not in the window
            s0, s1 = (int(v / speed) for v in phrase.first_word)
            samples = samples[:int(phrase.second_word[0] / speed) - RATE // 20]
        else:
            s0, s1 = (int(v / speed) for v in phrase.second_word)
        window = place(samples, (s0, min(s1, len(samples))), rng)
        window *= np.float32(10 ** rng.uniform(-0.6, 0.4))
    elif label == "noise":  # the noise recording filling 0.4 s up to the whole window
        length = int(rng.integers(2 * WINDOW // 5, WINDOW + 1))
        start = int(rng.integers(0, len(noise) - length))
        window = place(noise[start:start + length], (0, length), rng)
        window *= np.float32(10 ** rng.uniform(-0.7, 0.5))
    else:
        window = np.zeros(WINDOW, np.float32)
    return np.clip(window + background(rng, noise), -1.0, 0.999)


def make_set(count: int, phrases: dict[str, list[Phrase]], noise: np.ndarray, seed: int
             ) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    windows, labels = [], []
    for index, label in enumerate(LABELS):
        for _ in range(count):
            windows.append(example(label, phrases, noise, rng))
            labels.append(index)
    return windows, np.asarray(labels)


def write_wavs(folder: Path, windows: list[np.ndarray], labels: np.ndarray) -> None:
    for i, (window, label) in enumerate(zip(windows, labels)):
        target = folder / LABELS[label]
        target.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target / f"{i:04d}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(np.round(window * 32768).clip(-32768, 32767).astype("<i2").tobytes())


def features(windows: list[np.ndarray], mean: float, std: float) -> np.ndarray:
    """The daemon's features (what the device computes), normalized with mean/std."""
    audio = AudioSpec.from_dict(FEATURES)
    shape = (1, *audio.feature_shape, 1)
    pre = AudioPreprocessor(PreprocessSpec(mean=(mean,), std=(std,)), audio,
                            TensorSpec("x", 0, shape, np.dtype(np.float32)))
    x = np.zeros((len(windows), *shape[1:]), np.float32)
    for i, window in enumerate(windows):
        # Through s16 like every recording the device reads
        pre(np.round(window * 32768)[:, None] / 32768, x[i])
    return x


def train(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        layers.Input(x.shape[1:]),
        layers.Conv2D(12, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(24, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.2),
        layers.Dense(len(LABELS), activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=25, batch_size=64, validation_data=(x_val, y_val), verbose=0)
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    logger.info("held-out accuracy (float Keras model): %.3f", accuracy)
    return model


def build(output: Path, seed: int = 0) -> Path:
    phrases = load_phrases()
    noise = decode(ALSA / "Noise.wav")
    windows, y = make_set(PER_CLASS, phrases, noise, seed)
    val_windows, y_val = make_set(HELD_OUT, phrases, noise, seed + 1)
    raw = features(windows, 0.0, 1.0)
    mean, std = float(raw.mean()), float(raw.std())
    logger.info("log-mel mean %.3f std %.3f over %d windows", mean, std, len(raw))
    model = train((raw - mean) / std, y, features(val_windows, mean, std), y_val, seed)
    with tempfile.TemporaryDirectory(prefix="audio-model-") as tmp:
        work = Path(tmp)
        model.save(work / "keywords.keras")
        rng = np.random.default_rng(seed + 2)
        calib = sorted(rng.choice(len(windows), 240, replace=False))
        write_wavs(work / "calib", [windows[i] for i in calib], y[calib])
        write_wavs(work / "val", val_windows, y_val)
        (work / "labels.txt").write_text("\n".join(LABELS) + "\n")
        from converters.cli import main as edge_convert

        status = edge_convert([
            str(work / "keywords.keras"), "-o", str(output), "--quantize", "int8",
            "--sample-rate", str(RATE), "--window", str(WINDOW), "--features", "log-mel",
            "--n-fft", "512", "--win-length", "400", "--hop-length", "320", "--n-mels", "32",
            "--fmin", "60", "--fmax", "7600", "--mean", f"{mean:.6f}", "--std", f"{std:.6f}",
            "--labels", str(work / "labels.txt"), "--calibration-data", str(work / "calib"),
            "--validation-data", str(work / "val"), "--max-accuracy-drop", "0.05",
            "--top-k", "1", "--no-progress"])
        if status != 0:
            raise SystemExit(f"edge-convert failed with status {status}")
    logger.info("wrote %s (%d bytes)", output, output.stat().st_size)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=HERE / "audio" / "keywords.tflite")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if shutil.which("ffmpeg") is None or not (ALSA / "Front_Left.wav").exists():
        raise SystemExit("needs ffmpeg and alsa-utils (deploy/dev-setup.sh)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    build(args.output, args.seed)


if __name__ == "__main__":
    main()
