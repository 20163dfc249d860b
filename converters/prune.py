"""--prune SPARSITY: magnitude pruning with fine-tuning for Keras 3 models.

TensorFlow Model Optimization's pruning wrappers only work with the legacy tf-keras (Keras 2);
with Keras 3 `tfmot.sparsity.keras.prune_low_magnitude` rejects the model. What pruning needs is
small, so it is written here against Keras 3's public API:

- every kernel (Dense, Conv1D/2D, DepthwiseConv2D; biases and normalization are left dense) gets
  a mask that keeps its largest-magnitude weights;
- while the model is fine-tuned on labeled training data, the sparsity rises from 0 to the target
  along Zhu & Gupta's cubic schedule over the first 70% of the steps (the masks are recomputed
  every few steps), then the rest of the steps recover accuracy at the target;
- after every batch the masked weights are written back as zeros, so the saved model is an
  ordinary Keras model whose kernels are SPARSITY zeros.

What the zeros buy in the .tflite file: float32/float16 files of a pruned model store mostly-zero
weights in TFLite's sparse format (converters.modes.SPARSE_WEIGHT_MODES; DENSIFY ops expand them
when the model is loaded), so the file itself shrinks. Quantized files store zeros like any
other weight: only their compressed size (a download, an OTA update) shrinks. Speed: see
`latency_variants`.
"""

from __future__ import annotations

import gzip
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConvertError

logger = logging.getLogger(__name__)

RAMP_FRACTION = 0.7  # share of the fine-tuning steps over which the sparsity rises
UPDATE_EVERY = 10  # steps between mask updates while it rises
LEARNING_RATE = 1e-3
BATCH = 32


@dataclass
class PruneResult:
    target: float
    sparsity: float  # zeros / weights, over the pruned kernels
    pruned_weights: int
    total_weights: int  # every parameter of the model
    epochs: int
    train_samples: int
    layers: dict[str, float] = field(default_factory=dict)  # layer name -> its sparsity

    def to_dict(self) -> dict[str, Any]:
        return {"target_sparsity": self.target, "sparsity": round(self.sparsity, 4),
                "pruned_weights": self.pruned_weights, "total_weights": self.total_weights,
                "model_sparsity": round(self.zeros_share, 4), "epochs": self.epochs,
                "train_samples": self.train_samples,
                "layers": {k: round(v, 4) for k, v in self.layers.items()}}

    @property
    def zeros_share(self) -> float:
        return self.sparsity * self.pruned_weights / max(1, self.total_weights)


def sparsity_at(step: int, ramp_steps: int, target: float) -> float:
    """Zhu & Gupta (2017): s_t = s_f * (1 - (1 - t / T)^3), reaching s_f at step T."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - step / ramp_steps) ** 3)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """1 for the weights kept, 0 for the `sparsity` share with the smallest magnitudes."""
    count = int(round(sparsity * weights.size))
    mask = np.ones(weights.size, np.float32)
    if count > 0:
        order = np.argsort(np.abs(weights).reshape(-1), kind="stable")
        mask[order[:count]] = 0.0
    return mask.reshape(weights.shape)


def prunable_kernels(model: Any) -> list[tuple[str, Any]]:
    """(layer name, kernel variable) for every layer with a kernel of rank 2 or more."""
    kernels = []
    for layer in _all_layers(model):
        for attribute in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attribute, None)
            if variable is not None and len(variable.shape) >= 2:
                kernels.append((f"{layer.name}/{attribute}", variable))
    return kernels


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def _loss_for(model: Any, x: np.ndarray) -> Any:
    import keras

    probe = np.asarray(model(x[: min(len(x), 8)], training=False))
    probabilities = bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=-1), 1.0, atol=1e-3))
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def prune(model: Any, x: np.ndarray, y: np.ndarray, target: float, epochs: int,
          seed: int = 0) -> PruneResult:
    """Prune `model` in place to `target` sparsity while fine-tuning it on (x, y)."""
    import keras

    if not 0.0 < target < 1.0:
        raise ConvertError(f"--prune {target}: give the share of weights to remove, "
                           f"between 0 and 1 (0.5 = half)")
    kernels = prunable_kernels(model)
    if not kernels:
        raise ConvertError("--prune: the model has no Dense or convolution kernels to prune")
    keras.utils.set_random_seed(seed)
    steps_per_epoch = max(1, int(np.ceil(len(x) / BATCH)))
    ramp = int(RAMP_FRACTION * steps_per_epoch * epochs)
    masks = [np.ones(v.shape, np.float32) for _, v in kernels]

    class Masking(keras.callbacks.Callback):
        step = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.step += 1
            if self.step % UPDATE_EVERY == 0 or self.step >= ramp:
                level = sparsity_at(self.step, ramp, target)
                for k, (_, variable) in enumerate(kernels):
                    masks[k] = magnitude_mask(np.asarray(variable), level)
            for mask, (_, variable) in zip(masks, kernels):
                variable.assign(np.asarray(variable) * mask)

    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=_loss_for(model, x))
    started = time.monotonic()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[Masking()],
              shuffle=True)
    for k, (_, variable) in enumerate(kernels):  # exactly the target, whatever the step count
        variable.assign(np.asarray(variable) * magnitude_mask(np.asarray(variable), target))
    logger.info("pruned to %.0f%% in %.1f s", 100 * target, time.monotonic() - started)
    layers = {name: float(np.mean(np.asarray(v) == 0)) for name, v in kernels}
    pruned = sum(int(np.prod(v.shape)) for _, v in kernels)
    zeros = sum(int(np.sum(np.asarray(v) == 0)) for _, v in kernels)
    return PruneResult(target, zeros / pruned, pruned, int(model.count_params()), epochs,
                       len(x), layers)


def gzip_size(data: bytes) -> int:
    """What a download or an OTA update of the file costs (gzip -9)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def latency_variants(model_bytes: bytes, x: np.ndarray, repeats: int = 200) -> dict[str, float]:
    """Median invoke latency (ms, one thread) on ai-edge-litert with its default XNNPACK delegate
    and without any delegate (the built-in kernels).

    XNNPACK's sparse inference needs no option: the TFLite XNNPACK delegate asks for it
    (XNN_FLAG_HINT_SPARSE_INFERENCE, tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc) when
    a delegated node reads weights a DENSIFY op expands, i.e. a float file of a pruned model. XNNPACK
    then runs the part of the graph it can in its sparse (CHW) kernels if that part starts with a
    3x3 stride-2 convolution of 3 channels, ends with a spatial MEAN, holds only 1x1
    convolutions (at least 2/3 zeros), 3x3/5x5 depthwise convolutions and element-wise ops. On
    x86 with AVX it never does (xnn_is_chw_compatible_config in XNNPACK's hardware config: "on
    processors with AVX ISA dense inference is expected to be faster than sparse"); on Arm
    (a Raspberry Pi) it does.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from converters.verify import interpreter_input

    out = {}
    for name, resolver in (("xnnpack", OpResolverType.AUTO),
                           ("no_delegate", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
        interpreter = Interpreter(model_content=model_bytes, num_threads=1,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        sample = interpreter_input(x[:1], detail)
        times = []
        for _ in range(repeats):
            interpreter.set_tensor(detail["index"], sample)
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        out[name] = float(np.median(times) * 1000.0)
    return out


def save(model: Any, folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.keras"
    model.save(path)
    return path
