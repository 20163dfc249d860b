"""What listening costs: log-mel features against the keyword model's invoke, per window.

    python bench/bench_audio.py [--rounds 5] [--seconds 1]

One audio window (a real recording from alsa-utils, or noise when it is missing) goes through
the daemon's AudioPreprocessor into the example keyword model's int8 input tensor, and the model
is invoked; the two are timed in alternating rounds in one process, so a noisy machine slows both
alike. Printed: the median time of each, their ratio, and the share of one core continuous
listening takes at the example's stride (a window every 0.25 s). The same is measured for the
log-mel defaults (10 ms hops, 40 bands: twice the frames) with the features alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np

from common import REPO, cpu_summary

from edge_runtime.model.runtime import select_runtime  # noqa: E402  (common puts REPO on the path)
from edge_runtime.model.tflite_model import TensorSpec, TfliteModel  # noqa: E402
from edge_runtime.preprocessing import AudioPreprocessor, AudioSpec, PreprocessSpec  # noqa: E402

MODEL = REPO / "examples" / "audio" / "keywords.tflite"
RECORDING = Path("/usr/share/sounds/alsa/Front_Left.wav")
STRIDE_S = 0.25


def window(samples: int) -> np.ndarray:
    if RECORDING.exists():
        with wave.open(str(RECORDING)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")[::3]  # ~16 kHz
        data = np.zeros(samples, np.float32)
        data[: min(samples, len(pcm))] = pcm[:samples] / 32768.0
    else:
        data = np.random.default_rng(0).standard_normal(samples).astype(np.float32) * 0.1
    return data[:, None]


def per_call_ms(call, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
    return (time.perf_counter() - start) / count * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    model = TfliteModel(MODEL, select_runtime("auto"), threads=1)
    meta = model.metadata
    assert meta is not None
    audio = AudioSpec.from_dict(meta.audio)
    features = AudioPreprocessor(PreprocessSpec().updated(meta.preprocess), audio, model.inputs[0])
    samples = window(audio.window)
    tensor = np.zeros(model.inputs[0].shape, model.inputs[0].dtype)
    defaults = AudioSpec.from_dict({"sample_rate": audio.sample_rate, "window": audio.window,
                                    "features": "log-mel"})
    default_input = TensorSpec("x", 0, (1, *defaults.feature_shape, 1), np.dtype(np.float32))
    default_features = AudioPreprocessor(PreprocessSpec(), defaults, default_input)
    default_tensor = np.zeros(default_input.shape, np.float32)
    print(f"model {MODEL.name}: input {list(model.inputs[0].shape)} {model.inputs[0].dtype}, "
          f"window {audio.window} samples at {audio.sample_rate} Hz; {cpu_summary()}")

    def invoke() -> None:
        model.fill_input(lambda out: np.copyto(out, tensor))
        model.invoke()

    feat_ms, invoke_ms, default_ms = [], [], []
    for round_ in range(1, args.rounds + 1):
        feat_ms.append(per_call_ms(lambda: features(samples, tensor), args.seconds))
        invoke_ms.append(per_call_ms(invoke, args.seconds))
        default_ms.append(per_call_ms(lambda: default_features(samples, default_tensor),
                                      args.seconds))
        print(f"round {round_}: features {feat_ms[-1]:.3f} ms, invoke {invoke_ms[-1]:.3f} ms, "
              f"default log-mel {default_ms[-1]:.3f} ms")
    feat, inv, dflt = (statistics.median(v) for v in (feat_ms, invoke_ms, default_ms))
    print(f"median: features {feat:.3f} ms ({list(audio.feature_shape)}), invoke {inv:.3f} ms; "
          f"features / invoke = {feat / inv:.2f}")
    print(f"continuous listening, a window every {STRIDE_S:g} s: "
          f"{(feat + inv) / (STRIDE_S * 1e3):.2%} of one core")
    print(f"log-mel defaults ({list(defaults.feature_shape)}): {dflt:.3f} ms = "
          f"{dflt / feat:.2f}x the example's features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
