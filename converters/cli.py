"""edge-convert: trained model in, verified (quantized) .tflite with embedded metadata out.

Exit status: 0 written (or --compare done), 1 conversion or verification failed (nothing
written), 2 bad input or options.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from converters.errors import ConversionFailed, ConvertError
from converters.modes import MODE_NAMES, MODES
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.preprocessing.spec import PreprocessSpec
from edge_runtime.sources.images import ImagesOptions

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# The images source's decode settings, with the device's defaults.
REDUCED_DECODE: bool = ImagesOptions.__dataclass_fields__["reduced_decode"].default
MAX_PIXELS: int = ImagesOptions.__dataclass_fields__["max_pixels"].default
# What the convert extra brings that the device install lacks (edge-convert is installed on devices
# too, as a console script of the same package).
CONVERT_EXTRA_MODULE = "tensorflow"
MISSING_EXTRA = ("edge-convert: error: the converter needs the convert extra "
                 "(pip install 'edge-runtime[convert]'); this Python has no {module}")


AUDIO_ARGS = ("sample_rate", "features", "n_fft", "win_length", "hop_length", "n_mels", "fmin",
              "fmax", "power", "log_offset")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word: take it as a string
    return key.strip(), parsed


def build_parser(distill: bool = False) -> argparse.ArgumentParser:
    modes = "; ".join(f"{m.name}: {m.description}" for m in MODES.values())
    parser = argparse.ArgumentParser(
        prog="edge-convert distill" if distill else "edge-convert",
        description=("Train a small student to match TEACHER on unlabeled inputs, convert both, "
                     "report them side by side." if distill else
                     "Convert a Keras, SavedModel, PyTorch (.pt2) or ONNX model to a verified "
                     ".tflite with embedded edge-runtime metadata. 'edge-convert distill -h': "
                     "knowledge distillation."),
        epilog="Exit status: 0 written, 1 conversion or verification failed (nothing written), "
               "2 bad input.",
    )
    parser.add_argument("model", type=Path, metavar="TEACHER" if distill else "model",
                        help="Keras .keras/.h5 file, SavedModel folder, torch.export .pt2 or "
                             ".onnx file")
    parser.add_argument("-o", "--output", type=Path, help="the .tflite file to write")
    parser.add_argument("--quantize", choices=MODE_NAMES, default="none", help=modes)
    parser.add_argument("--io-type", choices=("int8", "uint8", "float32", "int16"),
                        help="input/output tensor type for int8 (default int8) and int16x8 "
                             "(default float32)")
    parser.add_argument("--compare", action="store_true",
                        help="convert and verify every mode, print a table, write no model")
    parser.add_argument("--output-dir", type=Path,
                        help="with --compare: also write each verified mode's model here")
    data = parser.add_argument_group("data")
    data.add_argument("--calibration-data", type=Path,
                      help="folder of images, .npy/.npz of inputs, or sensor .csv")
    data.add_argument("--validation-data", type=Path,
                      help="like --calibration-data; class subfolders or a 'y' array give labels")
    data.add_argument("--validation-labels", type=Path,
                      help="labels for --validation-data: .npy/.npz, or text/CSV one per line")
    data.add_argument("--labels", type=Path, help="class names, one per line (stored in the model)")
    data.add_argument("--calibration-samples", type=int, default=200,
                      help="use at most this many calibration samples (default 200)")
    data.add_argument("--validation-samples", type=int,
                      help="use at most this many validation samples (default all)")
    pre = parser.add_argument_group("preprocessing (stored in the model; the device uses the same)")
    pre.add_argument("--task", default="classification", choices=tuple(TASKS),
                     help="what the daemon does with the outputs (default classification)")
    for spec_field in fields(PreprocessSpec):  # every device setting, from its one definition
        numbers = isinstance(spec_field.default, tuple)
        pre.add_argument(f"--{spec_field.name.replace('_', '-')}", dest=spec_field.name,
                         type=_floats if numbers else str,
                         choices=spec_field.metadata["choices"] or None,
                         help=spec_field.metadata["help"])
    pre.add_argument("--reduced-decode", action=argparse.BooleanOptionalAction,
                     default=REDUCED_DECODE,
                     help="decode image files as the images source does with reduced_decode "
                          f"(default {'on' if REDUCED_DECODE else 'off'}, as on the device): "
                          "JPEGs at 1/2, 1/4 or 1/8 size when the model input allows")
    pre.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                     help="refuse image files whose header declares more pixels, as the images "
                          f"source's max_pixels (default {MAX_PIXELS}, as on the device)")
    pre.add_argument("--columns", type=_names, default=(),
                     help="sensor models: CSV columns in model order, e.g. ax,ay,az")
    pre.add_argument("--window", type=int, help="sensor models: rows per window "
                                                "(default: from the input shape)")
    pre.add_argument("--stride", type=int, default=1, help="sensor CSV: rows between windows")
    pre.add_argument("--label-column", help="sensor CSV: column with each row's class")
    audio = parser.add_argument_group(
        "audio models (stored in the model; data: .wav files, one subfolder per class)")
    audio.add_argument("--sample-rate", type=int,
                       help="samples per second the model takes; makes it an audio model "
                            "(--window: samples per input, default one second; --stride: "
                            "samples between windows cut from a .wav, default --window)")
    audio.add_argument("--features", choices=("waveform", "log-mel"),
                       help="what the model takes: the samples (default) or a log-mel "
                            "spectrogram [frames, n_mels] computed like the device does")
    audio.add_argument("--n-fft", type=int, help="log-mel: FFT length (default 512)")
    audio.add_argument("--win-length", type=int, help="log-mel: samples per frame (default 400)")
    audio.add_argument("--hop-length", type=int,
                       help="log-mel: samples between frames (default 160)")
    audio.add_argument("--n-mels", type=int, help="log-mel: mel bands (default 40)")
    audio.add_argument("--fmin", type=float, help="log-mel: lowest frequency, Hz (default 20)")
    audio.add_argument("--fmax", type=float,
                       help="log-mel: highest frequency, Hz (default half the sample rate)")
    audio.add_argument("--power", type=float, choices=(1.0, 2.0),
                       help="log-mel: 1 magnitude, 2 power spectrum (default 2)")
    audio.add_argument("--log-offset", type=float,
                       help="log-mel: added before the log (default 1e-6)")
    post = parser.add_argument_group("postprocessing (stored in the model)")
    post.add_argument("--top-k", type=int, help="classification: classes per result")
    post.add_argument("--threshold", type=float, help="classification/detection: minimum score")
    post.add_argument("--postprocess", type=_option, action="append", default=[],
                      metavar="KEY=VALUE",
                      help="any task option, value in TOML syntax as in [pipelines.postprocess] "
                           "(e.g. format=\"yolo\", iou_threshold=0.5); repeatable")
    check = parser.add_argument_group("verification")
    check.add_argument("--max-accuracy-drop", type=float,
                       help="fail (exit 1, nothing written) if top-1 accuracy, or agreement when "
                            "unlabeled, drops by more than this fraction (0.01 = 1 point)")
    check.add_argument("--report", type=Path, help="write the verification report as JSON")
    check.add_argument("--plot", type=Path, help="with --compare: draw accuracy vs latency vs "
                                                 "size (needs matplotlib)")
    check.add_argument("--tflite-runtime-python", help="a Python with tflite-runtime 2.14 to "
                       "check the model on (or $EDGE_CONVERT_TFLITE_RUNTIME_PYTHON; default: "
                       "the checkout's .venv-tflite when there is one)")
    check.add_argument("--timeout", type=float, default=1800.0,
                       help="seconds without progress before a conversion is stopped")
    group = parser.add_argument_group(
        "distillation" if distill else "distillation (also: edge-convert distill -h)")
    group.add_argument("--inputs", type=Path, required=distill,
                       help="unlabeled inputs the student learns the teacher on (a folder of "
                            "images, .npy/.npz or CSV, read like --calibration-data)")
    group.add_argument("--student", default="mobilenet:0.25" if distill else None,
                       help="mobilenet:ALPHA (MobileNet-style, width multiplier ALPHA"
                            + ("; default mobilenet:0.25" if distill else "") +
                            ") or a Keras model file to train on the model's outputs")
    group.add_argument("--temperature", type=float, default=4.0,
                       help="softens the teacher's outputs (default 4)")
    group.add_argument("--epochs", type=int, default=30,
                       help="distillation training epochs (default 30)")
    if distill:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        parser.add_argument("-v", "--verbose", action="store_true")
        return parser
    shrink = parser.add_argument_group("pruning (Keras models)")
    shrink.add_argument("--prune", type=float, metavar="SPARSITY",
                        help="zero this share of every kernel's weights (0.5 = half) by magnitude "
                             "while fine-tuning on --train-data; the report shows the model as "
                             "given and pruned side by side")
    shrink.add_argument("--train-data", type=Path,
                        help="labeled samples to fine-tune on, like --validation-data")
    shrink.add_argument("--prune-epochs", type=int, default=8,
                        help="fine-tuning epochs for --prune (default 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def options_from_args(args: argparse.Namespace) -> Any:
    from converters.convert import Options

    preprocess = {f.name: getattr(args, f.name) for f in fields(PreprocessSpec)
                  if getattr(args, f.name) is not None}
    audio = {k: getattr(args, k) for k in AUDIO_ARGS if getattr(args, k) is not None}
    postprocess = dict(args.postprocess)
    for key in ("top_k", "threshold"):
        if getattr(args, key) is not None:
            postprocess[key] = getattr(args, key)
    return Options(
        model=args.model,
        output=args.output,
        output_dir=args.output_dir,
        modes=MODE_NAMES if args.compare else (args.quantize,),
        io_type=args.io_type,
        calibration_data=args.calibration_data,
        validation_data=args.validation_data,
        validation_labels=args.validation_labels,
        labels_file=args.labels,
        task=args.task,
        preprocess=preprocess,
        columns=args.columns,
        window=args.window,
        stride=max(1, args.stride),
        label_column=args.label_column,
        reduced_decode=args.reduced_decode,
        max_pixels=args.max_pixels,
        audio=audio,
        calibration_samples=args.calibration_samples,
        validation_samples=args.validation_samples,
        max_accuracy_drop=args.max_accuracy_drop,
        postprocess=postprocess,
        tflite_runtime_python=args.tflite_runtime_python,
        timeout_s=args.timeout,
        progress=not args.no_progress,
    )


def variant_makers(args: argparse.Namespace, distill: bool) -> list[Any]:
    """--prune and distillation (the distill command, or --student with --inputs)."""
    makers = []
    if getattr(args, "prune", None) is not None:
        from converters.variants import pruning

        makers.append(pruning(args.prune, args.train_data, max(1, args.prune_epochs)))
    if distill or getattr(args, "student", None):
        from converters.distill import StudentSpec, distillation

        if args.inputs is None:
            raise ConvertError("--student needs --inputs (unlabeled inputs for the teacher)")
        makers.append(distillation(args.inputs, StudentSpec.parse(args.student),
                                   max(1, args.epochs), args.temperature))
    return makers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    distill = bool(argv) and argv[0] == "distill"
    parser = build_parser(distill)
    args = parser.parse_args(argv[1:] if distill else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if (args.plot or args.output_dir) and not args.compare:
        parser.error("--plot and --output-dir go with --compare")
    if importlib.util.find_spec(CONVERT_EXTRA_MODULE) is None:
        print(MISSING_EXTRA.format(module=CONVERT_EXTRA_MODULE), file=sys.stderr)
        return EXIT_USAGE
    from converters.convert import run

    try:
        makers = variant_makers(args, distill)
        if makers:
            from converters.variants import run_variants

            result = run_variants(options_from_args(args), makers)
        else:
            result = run(options_from_args(args))
    except ConvertError as exc:
        print(f"edge-convert: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConversionFailed as exc:
        print(f"edge-convert: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(result.report.table())
    if "pruning" in result.report.sections:
        from converters.variants import pruning_summary

        print(pruning_summary(result.report.sections["pruning"]))
    if "distillation" in result.report.sections:
        from converters.distill import distill_summary

        print(distill_summary(result.report.sections["distillation"]))
    if args.report:
        result.report.write_json(args.report)
    if args.plot:
        from converters.plot import plot_report

        if plot_report(result.report, args.plot):
            print(f"plot: {args.plot}")
        else:
            print("plot: skipped (matplotlib is not installed: pip install 'edge-runtime[plot]')")
    if result.written:
        print(f"wrote {result.written}")
    if result.exit_code != EXIT_OK:
        print(f"edge-convert: failed: {result.message}", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
