"""edge-convert distill: a small student trained to match a large teacher, then converted.

    edge-convert distill TEACHER --inputs UNLABELED/ [--student mobilenet:0.25 | student.keras]
                         -o student.tflite --quantize int8 --calibration-data ... [--validation-data]

The teacher is any model edge-convert reads (Keras, SavedModel, .pt2, .onnx); the folder of
unlabeled inputs is read with the teacher's preprocessing (the daemon's code, as for calibration
data). The student is a MobileNet-style network (depthwise-separable convolutions, width
multiplier ALPHA) built for the teacher's input and class count, or a Keras model file whose
architecture is trained from its current weights. It learns the teacher's softened outputs
(Hinton et al.: cross-entropy with the teacher's probabilities at temperature T, scaled by T^2).
Then teacher and student are both converted in the requested modes and reported side by side;
every row's agreement is with the teacher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from converters.convert import Options, Result, run
from converters.errors import ConvertError
from converters.variants import Variant, VariantMaker

logger = logging.getLogger(__name__)

# MobileNet v1's depthwise-separable blocks: (output channels at width 1.0, stride).
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
STEM = 32
MIN_CHANNELS = 8
BATCH = 32
LEARNING_RATE = 3e-3
# Keras' 0.99 leaves the moving statistics far from the data after the few hundred steps a
# small unlabeled set gives (the student then answers one class for everything).
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class StudentSpec:
    alpha: float | None = None  # mobilenet:ALPHA
    path: Path | None = None  # a Keras model file

    @classmethod
    def parse(cls, text: str) -> StudentSpec:
        if text.startswith("mobilenet"):
            _, _, value = text.partition(":")
            try:
                alpha = float(value or "0.25")
            except ValueError:
                raise ConvertError(f"--student {text}: expected mobilenet:ALPHA, e.g. "
                                   f"mobilenet:0.25") from None
            if not 0 < alpha <= 4:
                raise ConvertError(f"--student {text}: the width multiplier must be in (0, 4]")
            return cls(alpha=alpha)
        path = Path(text)
        if path.suffix.lower() not in (".keras", ".h5") or not path.is_file():
            raise ConvertError(f"--student {text}: give mobilenet:ALPHA or a Keras model file "
                               f"(.keras, .h5)")
        return cls(path=path)

    @property
    def label(self) -> str:
        return f"student mobilenet {self.alpha:g}" if self.alpha else f"student {self.path.name}"


def mobilenet(input_shape: tuple[int, ...], classes: int, alpha: float) -> Any:
    """A MobileNet-v1-style classifier sized for `input_shape`: it stops striding at 2x2."""
    import keras
    from keras import layers

    def width(channels: int) -> int:
        return max(MIN_CHANNELS, int(round(channels * alpha / MIN_CHANNELS)) * MIN_CHANNELS)

    inputs = keras.Input(input_shape, name="image")
    size = min(input_shape[0], input_shape[1])
    stride = 2 if size >= 8 else 1
    x = layers.Conv2D(width(STEM), 3, strides=stride, padding="same", use_bias=False)(inputs)
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
    size //= stride
    for channels, block_stride in BLOCKS:
        block_stride = block_stride if size >= 4 else 1
        size //= block_stride
        x = layers.DepthwiseConv2D(3, strides=block_stride, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
        x = layers.Conv2D(width(channels), 1, use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"mobilenet_{alpha:g}")


def _student_logits(spec: StudentSpec, input_shape: tuple[int, ...], classes: int) -> Any:
    import keras

    if spec.alpha is not None:
        if len(input_shape) != 3:
            raise ConvertError(f"--student mobilenet needs an image model (input [H, W, C]); "
                               f"the teacher takes {list(input_shape)}: name a Keras student")
        return mobilenet(input_shape, classes, spec.alpha)
    assert spec.path is not None
    model = keras.models.load_model(spec.path, compile=False)
    if tuple(model.inputs[0].shape[1:]) != tuple(input_shape):
        raise ConvertError(f"--student {spec.path}: input {list(model.inputs[0].shape[1:])}, the "
                           f"teacher's is {list(input_shape)}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        last.activation = keras.activations.linear  # train on logits; softmax is added back
    return model


def teacher_probabilities(outputs: np.ndarray) -> np.ndarray:
    """The teacher's class probabilities, whether it outputs probabilities or logits."""
    flat = outputs.reshape(len(outputs), -1).astype(np.float64)
    if np.all(flat >= 0) and np.allclose(flat.sum(axis=1), 1.0, atol=1e-3):
        return flat
    shifted = np.exp(flat - flat.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def train_student(spec: StudentSpec, x: np.ndarray, teacher: np.ndarray, epochs: int,
                  temperature: float, seed: int = 0) -> Any:
    """The deployable student (softmax outputs), trained on the teacher's soft targets."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    logits_model = _student_logits(spec, tuple(x.shape[1:]), teacher.shape[1])
    logits = logits_model.outputs[0]
    soft_out = layers.Activation("softmax")(layers.Rescaling(1.0 / temperature)(logits))
    trainer = keras.Model(logits_model.inputs, soft_out)
    scale = temperature ** 2  # keeps the gradients' size independent of T (Hinton et al.)

    def loss(target: Any, predicted: Any) -> Any:
        return scale * keras.losses.categorical_crossentropy(target, predicted)

    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    trainer.fit(x, soften(teacher, temperature), batch_size=BATCH, epochs=epochs, verbose=0,
                shuffle=True)
    return keras.Model(logits_model.inputs, layers.Activation("softmax", name="scores")(logits))


def _top1_tflite(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from converters.verify import interpreter_input

    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    picks = []
    for sample in x:
        interpreter.set_tensor(detail["index"], interpreter_input(sample[None], detail))
        interpreter.invoke()
        picks.append(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
    return np.array(picks)


def distillation(inputs: Path, spec: StudentSpec, epochs: int,
                 temperature: float) -> VariantMaker:
    """The maker of the distilled-student variant of the given (teacher) model."""

    def make(options: Options, folder: Path) -> Variant:
        from converters.inputs import input_settings, read_label_names
        from converters.data import load_dataset
        from converters.loaders import find_loader
        from converters.progress import Progress

        if temperature <= 0:
            raise ConvertError("--temperature must be more than 0")
        progress = Progress(options.progress)
        source = find_loader(options.model).load(options.model)
        settings = input_settings(options, source)
        known = read_label_names(options.labels_file) if options.labels_file else ()
        unlabeled = load_dataset(inputs, settings, known, None, progress, "distillation inputs")
        teacher = teacher_probabilities(source.predict(unlabeled.x)[0])
        if teacher.shape[1] < 2:
            raise ConvertError("distill: the teacher must output class scores (2 or more)")
        check = unlabeled
        if options.validation_data is not None:
            check = load_dataset(options.validation_data, settings, known,
                                 options.validation_samples, progress, "validation")
        teacher_check = teacher_probabilities(source.predict(check.x)[0]).argmax(axis=1)
        student = train_student(spec, unlabeled.x.astype(np.float32), teacher, epochs,
                                temperature)
        student_path = folder / f"{options.model.stem}_student.keras"
        student.save(student_path)
        result = run(replace(options, model=student_path,
                             made_from=(options.model, f"distilled: {spec.label}")))
        agreement = np.asarray(student.predict(check.x, verbose=0)).argmax(axis=1)
        details = {
            "student": spec.label, "inputs": unlabeled.origin, "samples": len(unlabeled),
            "epochs": epochs, "temperature": temperature,
            "student_params": int(student.count_params()),
            "student_agreement_before_conversion": round(
                float(np.mean(agreement == teacher_check)), 6),
            "checked_on": check.origin,
            "student_accuracy_before_conversion":
                result.report.validation.get("reference_accuracy"),
        }
        teacher_params = _keras_params(options.model)
        if teacher_params:
            details["teacher_params"] = teacher_params
            details["size_ratio"] = round(teacher_params / max(1, details["student_params"]), 2)

        def finish(merged: Result) -> None:
            """Every row's agreement is with the teacher: the converted student's too."""
            details["teacher_accuracy"] = merged.report.validation.get("reference_accuracy")
            for entry in merged.report.modes:
                model = merged.models.get(f"{spec.label}:{entry.mode}")
                if entry.variant == spec.label and model is not None:
                    picks = _top1_tflite(model, check.x)
                    entry.agreement = float(np.mean(picks == teacher_check))

        return Variant(spec.label, "distillation", result, details, check.x[:1], finish)

    return make


def _keras_params(path: Path) -> int | None:
    if path.suffix.lower() not in (".keras", ".h5"):
        return None
    import keras

    return int(keras.models.load_model(path, compile=False).count_params())


def distill_summary(details: dict[str, Any]) -> str:
    size = (f", teacher {details['teacher_params']} parameters = {details['size_ratio']}x the "
            f"student's {details['student_params']}" if "teacher_params" in details
            else f", student {details['student_params']} parameters")
    return (f"distillation: {details['student']} trained {details['epochs']} epochs on "
            f"{details['samples']} unlabeled inputs at T={details['temperature']:g}{size}; "
            f"agreement with the teacher before conversion "
            f"{details['student_agreement_before_conversion']:.2%} on {details['checked_on']}")
