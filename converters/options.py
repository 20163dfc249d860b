"""edge-convert's options, and the checks made on them before anything is loaded.

`Options` is what converters.cli (and the variants, distill and bench callers) hand to
`converters.convert.run`; `check_options` refuses what the daemon could not run (an unknown task or
mode, an --io-type the mode lacks, task options the daemon's plugin rejects), naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import ConvertError
from converters.loaders import SourceModel
from converters.modes import MODE_NAMES, MODES, resolve_io_type
from edge_runtime.config.typed import ConfigError, Context, build
from edge_runtime.postprocessing.registry import TASKS as DAEMON_TASKS
from edge_runtime.sources.images import DEFAULT_MAX_PIXELS

TASKS = tuple(DAEMON_TASKS)  # the daemon's task plugins: a model must name one it can run


@dataclass(frozen=True)
class Options:
    model: Path
    output: Path | None = None
    # --compare: also write each verified mode's model here as <model stem>_<mode>.tflite.
    output_dir: Path | None = None
    modes: tuple[str, ...] = ("int8",)
    io_type: str | None = None
    calibration_data: Path | None = None
    validation_data: Path | None = None
    validation_labels: Path | None = None
    labels_file: Path | None = None
    task: str = "classification"
    # Only the PreprocessSpec fields the user gave (color, resize, mean, std, layout, ...).
    preprocess: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    window: int | None = None
    stride: int = 1
    label_column: str | None = None
    reduced_decode: bool = True  # decode images as the images source's reduced_decode
    max_pixels: int = DEFAULT_MAX_PIXELS  # and refuse them past its max_pixels
    # Audio models: sample_rate, features and log-mel keys the user gave (--sample-rate, ...).
    audio: dict[str, Any] = field(default_factory=dict)
    calibration_samples: int = 200
    validation_samples: int | None = None
    max_accuracy_drop: float | None = None
    # Task options stored in the metadata (validated against the daemon's task plugin).
    postprocess: dict[str, Any] = field(default_factory=dict)
    # A pruned model: float modes store its zeros sparse (converters.modes.SPARSE_WEIGHT_MODES).
    sparse_weights: bool = False
    tflite_runtime_python: str | None = None
    timeout_s: float = 1800.0
    progress: bool = True
    # Set when `model` is an intermediate file made from the user's model (a pruned copy, a
    # distilled student): (the user's model, how it was made). The metadata and the report name
    # the user's file, not the intermediate one.
    made_from: tuple[Path, str] | None = None

    @property
    def compare(self) -> bool:
        return len(self.modes) > 1


def check_options(options: Options) -> dict[str, str]:
    if not options.compare and options.output is None:
        raise ConvertError("give the output file with -o/--output (or use --compare)")
    if options.task not in TASKS:
        raise ConvertError(f"--task must be one of {', '.join(TASKS)}")
    io_types = {}
    for mode in options.modes:
        if mode not in MODES:
            raise ConvertError(
                f"unknown --quantize {mode!r}; choose one of {', '.join(MODE_NAMES)}")
        io_type = options.io_type
        if options.compare and io_type not in MODES[mode].io_types:
            io_type = None  # --compare: --io-type applies to the modes that offer it
        try:
            io_types[mode] = resolve_io_type(mode, io_type)
        except ValueError as exc:
            raise ConvertError(str(exc)) from None
    try:
        # The same check the daemon makes when it reads [pipelines.postprocess].
        build(DAEMON_TASKS[options.task].options, dict(options.postprocess), "postprocess",
              Context("edge-convert --postprocess", Path.cwd()))
    except ConfigError as exc:
        raise ConvertError(str(exc)) from None
    if options.max_pixels < 1:
        raise ConvertError("--max-pixels must be at least 1")
    if options.max_accuracy_drop is not None and options.max_accuracy_drop < 0:
        raise ConvertError("--max-accuracy-drop must be 0 or more (a fraction, 0.01 = 1 point)")
    return io_types


def source_io_types(options: Options, source: SourceModel,
                    io_types: dict[str, str]) -> dict[str, str]:
    """ai-edge-quantizer (PyTorch input) keeps float32 input/output tensors in every mode."""
    if not source.float_io_only:
        return io_types
    if options.io_type not in (None, "float32") and not options.compare:
        raise ConvertError(f"--io-type {options.io_type}: {source.framework} models keep float32 "
                           f"input and output tensors (ai-edge-quantizer); leave --io-type out")
    return {mode: "float32" for mode in io_types}
