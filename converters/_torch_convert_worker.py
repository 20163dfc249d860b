"""Convert a torch.export program (.pt2) to .tflite in the PyTorch virtualenv.

    <.venv-torch>/bin/python -m converters._torch_convert_worker JOB.json

The same job file and JSON-lines events as converters._convert_worker (the parent is
converters.conversion), but the float model comes from litert-torch and the quantization modes
from ai-edge-quantizer, which works on the converted flatbuffer: there is no TensorFlow graph for
TFLiteConverter to quantize. A 4-D input is taken as NCHW (PyTorch's layout) and the converted
model takes NHWC, what the device's preprocessing writes: the program is wrapped in a permute
that litert-torch folds into the graph. Imports torch, litert-torch, ai-edge-quantizer and numpy
only (no TensorFlow, no edge-runtime).
"""

from __future__ import annotations

import copy
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from converters._convert_worker import PROGRESS_EVERY, _emit, _summary, serve

# edge-convert's mode -> how ai-edge-quantizer makes it (None: the float model as converted).
AEQ_MODES = ("none", "float16", "dynamic", "int8", "int16x8")


def _recipe(mode: str) -> Any:
    from ai_edge_quantizer import recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    if mode == "float16":
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED,
                                       num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        return manager.get_quantization_recipe()
    if mode == "dynamic":
        # The legacy recipe leaves small weights in float like TFLiteConverter's dynamic range mode.
        # Its FULLY_CONNECTED weights are per channel, which tflite-runtime 2.14's hybrid kernel
        # computes wrongly without an error (top-1 agreement 0% on the test CNN): quantize them
        # per tensor, as TFLiteConverter does; convolutions stay per channel (2.14 runs those).
        rules = recipe.dynamic_legacy_wi8_afp32()
        fully_connected = copy.deepcopy(rules[0])
        fully_connected["operation"] = "FULLY_CONNECTED"
        fully_connected["op_config"]["weight_tensor_config"]["granularity"] = "TENSORWISE"
        return [*rules, fully_connected]
    if mode == "int8":
        return recipe.static_wi8_ai8()
    if mode == "int16x8":
        return recipe.static_wi8_ai16()
    raise ValueError(f"unknown mode {mode!r}")


def channel_last(module: Any) -> Any:
    """A module taking NHWC that feeds `module` the same values in NCHW."""
    import torch

    class ChannelLast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x.permute(0, 3, 1, 2))

    return ChannelLast(module)


def convert_float(model_path: Path, input_shape: list[int], layout: str) -> bytes:
    import litert_torch
    import torch

    program = torch.export.load(str(model_path))
    module = program.module()
    shape = list(input_shape)  # the source model's: NCHW for images
    if layout == "nchw":
        module = channel_last(module)
        shape = [shape[0], shape[2], shape[3], shape[1]]
    sample = (torch.zeros(shape, dtype=torch.float32),)
    # An exported program is already in inference mode (its module refuses .eval()).
    edge_model = litert_torch.convert(module, sample)
    return bytes(edge_model.model_content())


def quantize(float_model: bytes, mode: str, calibration: Any, events: TextIO) -> bytes:
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(bytearray(float_model), _recipe(mode))
    result = None
    if q.need_calibration:
        if calibration is None:
            raise ValueError(f"--quantize {mode} needs calibration data")
        signature = _signature(float_model)
        total = len(calibration)

        def samples() -> Any:
            for i in range(total):
                yield {signature[1]: calibration[i : i + 1]}
                if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == total:
                    _emit(events, event="calibrate", mode=mode, done=i + 1, total=total)

        result = q.calibrate({signature[0]: list(samples())}, num_threads=1)
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


def _signature(model: bytes) -> tuple[str, str]:
    """(signature key, input name) of the converted model's only signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    (key, spec), = interpreter.get_signature_list().items()
    return key, spec["inputs"][0]


def run(job: dict[str, Any], events: TextIO) -> int:
    import numpy as np

    try:
        float_model = convert_float(Path(job["model"]), job["input_shape"], job["layout"])
    except Exception as exc:  # noqa: BLE001 - litert-torch raises many types: reported, exit
        traceback.print_exc()
        _emit(events, event="fatal", message=f"litert-torch cannot convert {job['model']}: "
                                             f"{_summary(exc)}")
        return 2
    calibration = None
    if job.get("calibration"):
        calibration = np.load(job["calibration"]).astype(np.float32, copy=False)
    for item in job["jobs"]:
        mode, io_type = item["mode"], item["io_type"]
        _emit(events, event="start", mode=mode)
        try:
            if io_type != "float32":
                raise ValueError(f"--io-type {io_type}: ai-edge-quantizer keeps float32 "
                                 f"input and output tensors")
            model = float_model if mode == "none" else quantize(float_model, mode, calibration,
                                                                 events)
        except Exception as exc:  # noqa: BLE001 - many types: report, go to the next mode
            traceback.print_exc()
            _emit(events, event="error", mode=mode, message=_summary(exc))
            continue
        Path(item["output"]).write_bytes(model)
        _emit(events, event="done", mode=mode, size=len(model))
    return 0


def main(argv: list[str]) -> int:
    return serve(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
